"""The file-list tool: pairing by stem, unpaired files reported, reproducible splits that the dataset loads."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import ROOT

from dataset import GenericDatasetWithIntrinsics
from dataset.make_filelist import files_by_stem, main, make_filelists


@pytest.fixture
def raw(tmp_path):
    """8 paired frames (6 with intrinsics), one image without depth, one depth without image, one stray K."""
    for sub in ("images", "depths", "intrinsics"):
        (tmp_path / sub).mkdir()
    K = np.array([[60.0, 0, 34.5], [0, 60.0, 27.5], [0, 0, 1]])
    for i in range(9):
        cv2.imwrite(str(tmp_path / "images" / f"f{i}.jpg"), np.full((56, 70, 3), 20 * i, np.uint8))
    for i in list(range(8)) + [42]:
        cv2.imwrite(str(tmp_path / "depths" / f"f{i}.png"), np.full((56, 70), 1000 + i, np.uint16))
    for i in list(range(6)) + [99]:
        np.save(tmp_path / "intrinsics" / f"f{i}.npy", K)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    return tmp_path


def test_pairs_by_stem_and_reports_unpaired(raw):
    out = raw / "splits"
    result = make_filelists(raw / "images", raw / "depths", out, raw / "intrinsics", val_fraction=0.25, seed=0)
    assert len(result["train"]) == 6 and len(result["val"]) == 2
    assert sorted(result["unpaired"]) == sorted(
        str(raw / p) for p in ("images/f8.jpg", "depths/f42.png", "intrinsics/f99.npy")
    )
    lines = result["train"] + result["val"]
    assert sorted(line.split()[0] for line in lines) == [f"../images/f{i}.jpg" for i in range(8)]
    for line in lines:
        stem = line.split()[0][len("../images/") : -len(".jpg")]
        assert line.split()[1] == f"../depths/{stem}.png"
        assert len(line.split()) == (3 if int(stem[1:]) < 6 else 2)  # intrinsics only where a file exists
    assert (out / "train.txt").read_text().splitlines() == result["train"]
    dataset = GenericDatasetWithIntrinsics(out / "train.txt", mode="val", size=(56, 56), depth_scale=1e-3)
    assert len(dataset) == 6
    sample = dataset[0]
    assert sample["depth"].shape == (56, 70) and 1.0 <= float(sample["depth"][0, 0]) < 1.01


def test_split_is_reproducible_and_seeded(raw):
    first = make_filelists(raw / "images", raw / "depths", raw / "a", val_fraction=0.5, seed=1)
    again = make_filelists(raw / "images", raw / "depths", raw / "b", val_fraction=0.5, seed=1)
    others = [make_filelists(raw / "images", raw / "depths", raw / f"s{s}", val_fraction=0.5, seed=s) for s in (2, 3)]
    assert first["val"] == again["val"] and len(first["val"]) == 4
    assert any(other["val"] != first["val"] for other in others)
    assert sorted(first["train"] + first["val"]) == sorted(others[0]["train"] + others[0]["val"])


def test_files_of_one_stem_are_ambiguous_and_a_missing_folder_is_an_error(raw):
    cv2.imwrite(str(raw / "images" / "f1.png"), np.zeros((4, 4, 3), np.uint8))
    assert [p.name for p in files_by_stem(raw / "images", (".jpg", ".png"))["f1"]] == ["f1.jpg", "f1.png"]
    result = make_filelists(raw / "images", raw / "depths", raw / "amb")
    assert result["left_out"] == [f"key 'f1' is ambiguous: {raw / 'images/f1.jpg'}, {raw / 'images/f1.png'}, "
                                  f"{raw / 'depths/f1.png'}"]  # fmt: skip
    assert not any("f1" in line for line in result["train"] + result["val"]) and len(result["train"]) == 6
    with pytest.raises(SystemExit, match="nowhere: folder not found"):
        files_by_stem(raw / "nowhere", (".npy",))


def test_cli_reports_counts_and_unpaired_files(raw, capsys):
    main(["--images", str(raw / "images"), "--depths", str(raw / "depths"), "--out", str(raw / "cli")])
    printed = capsys.readouterr().out
    assert "wrote 7 train and 1 val lines" in printed
    assert "2 unpaired files" in printed and "f8.jpg" in printed and "f42.png" in printed


def test_the_guides_names_pair_by_their_shared_key(tmp_path, capsys):
    """images/image_001.jpg, depths/depth_001.npy, intrinsics/intrinsics_001.npy: paired by 001 (was 0 lines)."""
    for sub in ("images", "depths", "intrinsics"):
        (tmp_path / sub).mkdir()
    for i in range(1, 4):
        cv2.imwrite(str(tmp_path / "images" / f"image_{i:03d}.jpg"), np.full((56, 70, 3), 60, np.uint8))
        np.save(tmp_path / "depths" / f"depth_{i:03d}.npy", np.full((56, 70), 2.0, np.float32))
        K = np.array([[60.0, 0, 34.5], [0, 60, 27.5], [0, 0, 1]])
        np.save(tmp_path / "intrinsics" / f"intrinsics_{i:03d}.npy", K)
    np.save(tmp_path / "depths" / "depth_007.npy", np.ones((2, 2), np.float32))
    main([f"--{sub}={tmp_path / sub}" for sub in ("images", "depths", "intrinsics")] + [f"--out={tmp_path / 'splits'}"])
    printed = capsys.readouterr().out
    assert "wrote 2 train and 1 val lines" in printed
    assert "paired by the key * of images image_*, depths depth_*, intrinsics intrinsics_*" in printed
    assert "1 unpaired files" in printed and "depth_007.npy" in printed
    text = (tmp_path / "splits" / "train.txt").read_text() + (tmp_path / "splits" / "val.txt").read_text()
    expected = [
        f"../images/image_{i}.jpg ../depths/depth_{i}.npy ../intrinsics/intrinsics_{i}.npy"
        for i in ("001", "002", "003")
    ]
    assert sorted(text.splitlines()) == expected


def test_nothing_paired_writes_nothing_and_exits_non_zero(tmp_path):
    for sub, name in (("images", "a.jpg"), ("depths", "b.npy")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / name).write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "dataset.make_filelist", "--images", str(tmp_path / "images"), "--depths",
         str(tmp_path / "depths"), "--out", str(tmp_path / "splits")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and not (tmp_path / "splits").exists()
    assert "no image pairs with a depth map, nothing was written (1 file(s) in" in result.stderr
    assert "e.g. 'a'" in result.stderr and "e.g. 'b'" in result.stderr


@pytest.mark.parametrize("seed", range(3))
def test_the_lists_it_writes_always_parse(tmp_path, seed):
    """Names with spaces, tabs, quotes, '#', unicode and Windows-looking backslashes round-trip through a list."""
    rng = np.random.default_rng(seed)
    alphabet = list("ab_-.019 #'\"\\é\t")
    names = {"".join(rng.choice(alphabet, rng.integers(1, 9))).strip() or "x" for _ in range(12)}
    names = sorted(n for n in names if not ('"' in n and "'" in n))  # both quote kinds: refused (tested below)
    for sub in ("my images", "de pths"):
        (tmp_path / sub).mkdir()
    for name in names:
        cv2.imwrite(str(tmp_path / "my images" / f"{name}.png"), np.full((28, 42, 3), 50, np.uint8))
        np.save(tmp_path / "de pths" / f"{name}.npy", np.full((28, 42), 1.5, np.float32))
    result = make_filelists(tmp_path / "my images", tmp_path / "de pths", tmp_path / "out dir", val_fraction=0.0)
    assert not result["left_out"] and len(result["train"]) == len(names)
    dataset = GenericDatasetWithIntrinsics(tmp_path / "out dir" / "train.txt", mode="val", size=(28, 28))
    assert sorted(e.image.name for e in dataset.entries) == sorted(f"{n}.png" for n in names)
    assert all(e.depth.name == e.image.stem + ".npy" for e in dataset.entries)


def test_a_name_that_cannot_be_written_is_left_out_and_named(tmp_path):
    for sub in ("images", "depths"):
        (tmp_path / sub).mkdir()
    for name in ("ok", "both \"'"):
        cv2.imwrite(str(tmp_path / "images" / f"{name}.png"), np.full((28, 42, 3), 50, np.uint8))
        np.save(tmp_path / "depths" / f"{name}.npy", np.full((28, 42), 1.5, np.float32))
    result = make_filelists(tmp_path / "images", tmp_path / "depths", tmp_path / "out", val_fraction=0.0)
    assert result["train"] == ["../images/ok.png ../depths/ok.npy"]
    assert len(result["left_out"]) == 1 and "cannot be written in a file list" in result["left_out"][0]
