"""The file-list dataset: path resolution, mixed batches, every bad input reported with list file and line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dataset import DataError, GenericDatasetWithIntrinsics
from dataset.registry import build_dataset, resolve_split
from dataset.synthetic import write_synthetic_dataset


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("d") / "scenes", n_train=4, n_val=2, size=(112, 84))


def write_list(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_paths_resolve_against_list_folder_parent_and_cwd(scenes, tmp_path, monkeypatch):
    lines = (scenes / "splits" / "train.txt").read_text().splitlines()
    next_to_images = write_list(scenes / "beside.txt", ["# a comment", "", lines[0]])
    assert len(GenericDatasetWithIntrinsics(next_to_images)) == 1  # list folder
    assert len(GenericDatasetWithIntrinsics(scenes / "splits" / "train.txt")) == 4  # list folder's parent
    monkeypatch.chdir(scenes)
    elsewhere = write_list(tmp_path / "cwd.txt", [lines[1]])
    assert len(GenericDatasetWithIntrinsics(elsewhere)) == 1  # working directory


def test_sample_contents_and_mixed_intrinsics_collate(scenes, tmp_path):
    lines = (scenes / "splits" / "train.txt").read_text().splitlines()
    without_k = [" ".join(line.split()[:2]) for line in lines[2:]]
    mixed = write_list(scenes / "mixed.txt", lines[:2] + without_k)
    dataset = GenericDatasetWithIntrinsics(mixed, size=(70, 98))
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 3, 70, 98) and batch["image"].dtype == torch.float32
    assert batch["depth"].shape == (4, 70, 98) and batch["depth_valid"].dtype == torch.bool
    assert batch["intrinsics"].shape == (4, 3, 3)
    assert batch["has_intrinsics"].tolist() == [True, True, False, False]
    assert all(p.endswith(".png") for p in batch["image_path"])


def test_same_seed_same_augmentation(scenes):
    dataset = GenericDatasetWithIntrinsics(scenes / "splits" / "train.txt", size=(70, 98))
    a, b, c = dataset[(1, 5)], dataset[(1, 5)], dataset[(1, 6)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["intrinsics"], b["intrinsics"])
    assert not torch.equal(a["intrinsics"], c["intrinsics"])


def test_camera_dropout_hides_intrinsics(scenes):
    dataset = GenericDatasetWithIntrinsics(scenes / "splits" / "train.txt", size=(70, 98), camera_dropout=1.0)
    assert not dataset[(0, 1)]["has_intrinsics"]


def test_val_keeps_ground_truth_resolution_and_min_max_depth(scenes):
    dataset = GenericDatasetWithIntrinsics(scenes / "splits" / "val.txt", mode="val", size=(70, 70), max_depth=3.0)
    sample = dataset[0]
    assert sample["image"].shape == (3, 70, 98) and sample["depth"].shape == (84, 112)
    assert (sample["depth"][sample["depth_valid"]] <= 3.0).all()


def test_every_bad_line_is_reported_at_once(scenes, tmp_path):
    good = (scenes / "splits" / "train.txt").read_text().splitlines()[0]
    image, depth, K = (str(scenes / p) for p in good.split())
    (tmp_path / "corrupt.png").write_bytes(b"garbage bytes")
    np.save(tmp_path / "bad_k.npy", np.array([[1.0, 0, 1], [0, -1, 1], [0, 0, 1]]))
    bad = write_list(
        tmp_path / "bad.txt",
        [
            f"{image} {depth} {K}",
            f"{image}",
            f"{tmp_path / 'missing.png'} {depth}",
            f"{tmp_path / 'corrupt.png'} {depth}",
            f"{image} {depth} {tmp_path / 'bad_k.npy'}",
        ],
    )
    with pytest.raises(DataError) as err:
        GenericDatasetWithIntrinsics(bad)
    message = str(err.value)
    assert "4 bad line(s)" in message
    assert f"{bad}:2: expected 'image depth [intrinsics]', found 1 fields" in message
    assert f"{bad}:3: {tmp_path / 'missing.png'}: file not found" in message
    assert f"{bad}:4: {tmp_path / 'corrupt.png'}: not a valid PNG file" in message
    assert f"{bad}:5: {tmp_path / 'bad_k.npy'}: focal lengths must be positive" in message


def test_empty_list_and_load_time_errors(scenes, tmp_path):
    with pytest.raises(DataError, match="the file list is empty"):
        GenericDatasetWithIntrinsics(write_list(tmp_path / "empty.txt", ["# nothing"]))
    image, depth, K = (str(scenes / p) for p in (scenes / "splits" / "train.txt").read_text().split()[:3])
    np.save(tmp_path / "small.npy", np.ones((10, 10), np.float32))
    listed = write_list(tmp_path / "size.txt", [f"{image} {tmp_path / 'small.npy'}"])
    with pytest.raises(DataError, match=rf"{listed}:1: .*small.npy: depth is 10x10 but image .* is 112x84"):
        GenericDatasetWithIntrinsics(listed)[0]
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(open(image, "rb").read()[:60])
    listed = write_list(tmp_path / "trunc.txt", [f"{truncated} {depth}"])
    with pytest.raises(DataError, match=rf"{listed}:1: .*truncated.png: cannot read image"):
        GenericDatasetWithIntrinsics(listed)[0]


def test_skip_bad_samples_replaces_and_counts(scenes, tmp_path):
    lines = [line.split() for line in (scenes / "splits" / "train.txt").read_text().splitlines()]
    truncated = tmp_path / "t.png"
    truncated.write_bytes((scenes / lines[0][0]).read_bytes()[:60])
    listed = write_list(
        tmp_path / "l.txt", [f"{truncated} {scenes / lines[0][1]}", f"{scenes / lines[1][0]} {scenes / lines[1][1]}"]
    )
    dataset = GenericDatasetWithIntrinsics(listed, size=(70, 98), skip_bad_samples=True)
    sample = dataset[0]
    assert sample["image_path"].endswith(lines[1][0].split("/")[-1]) and len(dataset.bad_samples) == 1


def test_png_depth_with_scale(tmp_path):
    rgb = np.full((28, 42, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "i.png"), rgb)
    cv2.imwrite(str(tmp_path / "d.png"), np.full((28, 42), 512, np.uint16))
    dataset = GenericDatasetWithIntrinsics(
        write_list(tmp_path / "l.txt", ["i.png d.png"]), "val", (28, 28), depth_scale=1 / 256
    )
    assert torch.allclose(dataset[0]["depth"], torch.full((28, 42), 2.0))


def test_dataset_names_and_folders_resolve(scenes, tmp_path):
    assert resolve_split(str(scenes), "train") == scenes / "splits" / "train.txt"
    assert len(build_dataset(str(scenes), "val", (70, 70))) == 2
    with pytest.raises(DataError, match="--dataset no_such_dataset: no such folder, and no dataset of that name"):
        resolve_split("no_such_dataset", "train")


def test_a_dataset_typo_says_no_such_folder_and_the_closest_names(scenes, tmp_path):
    """Issue 27: a typo in --dataset said "no 'val' split" as if the folder existed."""
    typo = str(scenes)[:-1] + "x"  # .../scenex
    with pytest.raises(DataError, match=rf"--dataset {typo}: no such folder.*did you mean {scenes}\?"):
        resolve_split(typo, "val")
    with pytest.raises(DataError, match=r"--dataset hypersm: no such folder.*did you mean hypersim\?"):
        resolve_split("hypersm", "val")


def test_a_list_whose_every_line_is_bad_says_so_once_built_or_checked(scenes, tmp_path):
    """Issue 26: the "every line is bad" refusal lives in one place, `skip`, for the cheap checks and the check."""
    from dataset.check import check_dataset

    image, depth = (scenes / p for p in (scenes / "splits" / "train.txt").read_text().split()[:2])
    listed = write_list(tmp_path / "bad.txt", [f"{image} missing.npy", f"missing.png {depth}"])
    with pytest.raises(DataError, match=r"bad.txt: every line is bad \(all 2 skipped\)"):
        GenericDatasetWithIntrinsics(listed, skip_bad_samples=True)
    np.save(tmp_path / "small.npy", np.ones((10, 10), np.float32))
    listed = write_list(tmp_path / "sizes.txt", [f"{image} {tmp_path / 'small.npy'}"])
    with pytest.raises(DataError, match=r"sizes.txt: every line is bad \(all 1 skipped\)"):
        check_dataset(GenericDatasetWithIntrinsics(listed, skip_bad_samples=True))


def test_names_under_the_splits_folder_and_lists_directly_in_a_folder(scenes, tmp_path, monkeypatch):
    import dataset.registry as dataset_package

    named = tmp_path / "splits_root" / "my_data"
    named.mkdir(parents=True)
    line = (scenes / "splits" / "train.txt").read_text().splitlines()[0]
    write_list(named / "val.txt", [" ".join(str(scenes / p) for p in line.split())])
    monkeypatch.setattr(dataset_package, "SPLITS_DIR", tmp_path / "splits_root")
    assert resolve_split("my_data", "val") == named / "val.txt"
    assert resolve_split(str(named), "val") == named / "val.txt"  # a folder holding the lists itself
    with pytest.raises(DataError, match=rf"tried {named / 'splits' / 'train.txt'}, {named / 'train.txt'}"):
        resolve_split(str(named), "train")
    assert len(build_dataset("my_data", "val", (70, 70))) == 1


def test_root_and_custom_depth_reader(scenes, tmp_path):
    lines = (scenes / "splits" / "val.txt").read_text().splitlines()
    listed = write_list(tmp_path / "elsewhere.txt", lines)  # relative paths, resolvable only against the root
    with pytest.raises(DataError, match="file not found"):
        GenericDatasetWithIntrinsics(listed)
    read = []

    def halved(path):
        read.append(path)
        depth = np.load(path).astype(np.float64) / 2
        depth[:2, :3] = [[np.nan, -1.0, np.inf], [0.0, 1.5, 2.5]]
        return depth

    dataset = GenericDatasetWithIntrinsics(listed, mode="val", size=(70, 70), root=scenes, depth_reader=halved)
    expected = np.load(scenes / lines[0].split()[1]) / 2
    expected[:2, :3] = [[0, 0, 0], [0, 1.5, 2.5]]
    sample = dataset[0]
    assert sample["depth"].dtype == torch.float32
    np.testing.assert_allclose(sample["depth"].numpy(), expected, rtol=1e-6)
    assert sample["depth_valid"][:2, :3].tolist() == [[False] * 3, [False, True, True]]
    assert read == [scenes / lines[0].split()[1]]

    def broken(path):
        raise KeyError("no 'depth' in the file")

    dataset = GenericDatasetWithIntrinsics(listed, mode="val", size=(70, 70), root=scenes, depth_reader=broken)
    with pytest.raises(DataError, match=rf"{listed}:1: .*val_00000.npy: cannot read depth \(KeyError"):
        dataset[0]


def test_workers_start_with_one_opencv_thread_even_after_threaded_opencv_in_the_parent(scenes):
    """Regression: a worker calling cv2.setNumThreads after the parent ran OpenCV's thread pool could deadlock."""
    from dataset import seed_worker

    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        cv2.resize(np.zeros((800, 800, 3), np.uint8), (1200, 1200))  # the parent's pool threads are now live
        dataset = GenericDatasetWithIntrinsics(scenes / "splits" / "train.txt", size=(70, 98))
        assert cv2.getNumThreads() == 1
        for _ in range(3):  # the deadlock was intermittent: start several workers
            loader = DataLoader(dataset, batch_size=4, num_workers=1, worker_init_fn=seed_worker, timeout=30)
            assert next(iter(loader))["image"].shape == (4, 3, 70, 98)
        cv2.setNumThreads(3)
        seed_worker(0)
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(threads)


def test_loader_benchmark_reports_rates(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_loader import measure_loader, write_benchmark_data

    filelist = write_benchmark_data(tmp_path, n_images=2)
    assert cv2.imread(str(tmp_path / "0.jpg")).shape == (480, 640, 3)
    assert cv2.imread(str(tmp_path / "0_depth.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    result = measure_loader(size=70, num_workers=0, samples=4, repeats=2, batch_size=2, filelist=filelist)
    assert len(result["pass_seconds"]) == 2 and result["samples_per_s"] > 0
    assert result["samples_per_s_per_worker"] == result["samples_per_s"] and result["samples_per_cpu_s"] > 0


@pytest.mark.parametrize(
    "K, message",
    [
        ([[3.9, 0, 2.8], [0, 3.9, 2.1], [0, 0, 1]], "is K in millimetres"),
        ([[0.9, 0, 0.5], [0, 1.2, 0.5], [0, 0, 1]], "look normalised by the image size"),
        ([[90, 0, 300], [0, 90, 300], [0, 0, 1]], "cx=300 lies far outside the image"),
        ([[90, 2.0, 55.5], [0, 90, 41.5], [0, 0, 1]], "skew"),
    ],
)
def test_implausible_intrinsics_are_refused_naming_file_line_and_cause(scenes, tmp_path, K, message):
    image, depth, _ = (scenes / p for p in (scenes / "splits" / "train.txt").read_text().split()[:3])
    np.save(tmp_path / "K.npy", np.array(K, dtype=np.float64))
    listed = write_list(tmp_path / "k.txt", [f"{image} {depth} {tmp_path / 'K.npy'}"])
    with pytest.raises(DataError, match=rf"k.txt:1: {tmp_path / 'K.npy'}: .*{message}.*\(image .* is 112x84\)"):
        GenericDatasetWithIntrinsics(listed)


def test_paths_with_spaces_and_quotes_in_a_list(scenes, tmp_path):
    line = (scenes / "splits" / "train.txt").read_text().split()[:3]
    (tmp_path / "my images").mkdir()
    (tmp_path / "my images" / "it's 1.png").write_bytes((scenes / line[0]).read_bytes())
    (tmp_path / "d 1.npy").write_bytes((scenes / line[1]).read_bytes())
    listed = write_list(tmp_path / "s.txt", [f"\"my images/it's 1.png\"\t'd 1.npy'  {scenes / line[2]}"])
    sample = GenericDatasetWithIntrinsics(listed, size=(70, 70))[0]
    assert sample["image_path"] == str(tmp_path / "my images" / "it's 1.png") and sample["has_intrinsics"]
    with pytest.raises(DataError, match=r"s.txt:1: cannot split at column 1: quote a path holding spaces"):
        GenericDatasetWithIntrinsics(write_list(tmp_path / "s.txt", ["\"my images/it's 1.png d.npy"]))
    with pytest.raises(DataError, match=r'found 5 fields.*quote paths that hold spaces: "my images/a.png"'):
        GenericDatasetWithIntrinsics(write_list(tmp_path / "s.txt", ["my images/it's 1.png d 1.npy"]))


def test_an_error_in_a_dataloader_worker_arrives_as_its_one_line(scenes, tmp_path):
    lines = [line.split() for line in (scenes / "splits" / "train.txt").read_text().splitlines()]
    (tmp_path / "t.png").write_bytes((scenes / lines[0][0]).read_bytes()[:60])  # header intact, pixels cut
    listed = write_list(tmp_path / "w.txt", [f"{tmp_path / 't.png'} {scenes / lines[0][1]}"])
    loader = DataLoader(GenericDatasetWithIntrinsics(listed, size=(70, 70)), batch_size=1, num_workers=1)
    with pytest.raises(DataError) as err:
        next(iter(loader))
    assert str(err.value) == f"{listed}:1: {tmp_path / 't.png'}: cannot read image (missing, corrupt or unsupported)"
    assert "Traceback" in err.value.worker_traceback
