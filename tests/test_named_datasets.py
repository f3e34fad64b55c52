"""Named datasets on tiny fake copies of each dataset's own layout and file formats: prepare, depth decoding
(Hypersim's distance-to-planar conversion by hand), intrinsics through the val resize, valid masks, eval protocol."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

import train
from dataset import DataError
from dataset.adapters import hypersim, kitti, nyu, vkitti2
from dataset.prepare import format_report, main, prepare_dataset
from dataset.protocol import EvalProtocol, eval_crop_mask
from dataset.registry import build_dataset, resolve_split
from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.geometry import make_intrinsics, scale_intrinsics

ROOT = Path(__file__).resolve().parents[1]


def write_rgb(path: Path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


def write_png16(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), values.astype(np.uint16))


def assert_sample_K(sample: dict, K_original: np.ndarray, width: int, height: int) -> None:
    """The sample's K is the original K through the val resize to the returned image."""
    H, W = sample["image"].shape[1:]
    expected = scale_intrinsics(K_original, W / width, H / height)
    torch.testing.assert_close(sample["intrinsics"], torch.tensor(expected, dtype=torch.float32))
    assert sample["has_intrinsics"]


# --- Hypersim: 128 x 96 (the 1024 x 768 camera / 8) ---------------------------------------------------------


def make_hypersim(root: Path, frames: dict[str, list[int]], missing_depth: tuple = ()) -> None:
    for scene, ids in frames.items():
        images = root / scene / "images"
        for i in ids:
            write_rgb(images / "scene_cam_00_final_preview" / f"frame.{i:04d}.tonemap.jpg", 128, 96, i)
            if (scene, i) in missing_depth:
                continue
            distance = np.full((96, 128), 5.0, dtype=np.float16)
            distance[0, 0] = np.nan
            (images / "scene_cam_00_geometry_hdf5").mkdir(parents=True, exist_ok=True)
            with h5py.File(images / "scene_cam_00_geometry_hdf5" / f"frame.{i:04d}.depth_meters.hdf5", "w") as f:
                f.create_dataset("dataset", data=distance)


def test_hypersim_distance_becomes_planar_depth_with_the_published_camera(tmp_path):
    root = tmp_path / "hypersim"
    make_hypersim(root, {"ai_001_001": [0, 1, 2], "ai_001_002": [0]}, missing_depth=(("ai_001_001", 2),))
    (root / hypersim.SPLIT_CSV).write_text(
        "scene_name,camera_name,frame_id,included_in_public_release,exclude_reason,split_partition_name\n"
        "ai_001_001,cam_00,0,True,,train\nai_001_001,cam_00,1,False,bad,train\nai_001_001,cam_00,2,True,,train\n"
        "ai_001_002,cam_00,0,True,,val\n"
    )
    result = prepare_dataset("hypersim", root, root / "splits")
    assert {k: len(v) for k, v in result["splits"].items()} == {"train": 1, "val": 1, "test": 0}
    assert sorted(reason for _, reason in result["skipped"]) == ["no depth_meters.hdf5", "not in the public release"]
    assert (root / "splits/intrinsics/hypersim_128x96.txt").read_text().split() == [
        "110.85125",
        "110.85125",
        "63.5",
        "47.5",
    ]

    val = build_dataset("hypersim", "val", (70, 70), root=str(root))
    assert val.eval_protocol == EvalProtocol("none", 1e-3, 20.0)
    sample = val[0]
    # At 128 x 96: f = 886.81 / 8 = 110.85125, cx = (511.5 + 0.5) / 8 - 0.5 = 63.5, cy = (383.5 + 0.5) / 8 - 0.5 = 47.5.
    # Pixel (u, v) = (100, 10): z = 5 * f / sqrt(f^2 + 36.5^2 + 37.5^2).
    expected = 5.0 * 110.85125 / math.sqrt(110.85125**2 + 36.5**2 + 37.5**2)
    assert sample["depth"][10, 100].item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(4.5214, abs=1e-4)
    assert sample["depth"][48, 64].item() == pytest.approx(5.0, rel=1e-4)  # next to the principal point
    assert not sample["depth_valid"][0, 0] and sample["depth"][0, 0] == 0  # NaN distance
    assert sample["depth_valid"][1:, 1:].all()
    assert_sample_K(sample, make_intrinsics(110.85125, 110.85125, 63.5, 47.5), 128, 96)
    torch.testing.assert_close(
        torch.tensor(hypersim.intrinsics_for_size(1024, 768)), torch.tensor(hypersim.NATIVE_K), rtol=0, atol=0
    )


def test_hypersim_splits_by_scene_hash_and_checks_the_csv(tmp_path):
    names = [f"ai_{i:03d}_{j:03d}" for i in range(1, 41) for j in range(1, 51)]
    share = sum(hypersim.scene_split(n, 0.05) == "val" for n in names) / len(names)
    assert 0.03 < share < 0.07
    val_scene = next(n for n in names if hypersim.scene_split(n, 0.05) == "val")
    train_scene = next(n for n in names if hypersim.scene_split(n, 0.05) == "train")
    root = tmp_path / "hypersim"
    make_hypersim(root, {val_scene: [0], train_scene: [0, 1]})
    result = prepare_dataset("hypersim", root, root / "splits", val_fraction=0.05)
    assert [line.split("/")[0] for line in result["splits"]["val"]] == [val_scene]
    assert {line.split("/")[0] for line in result["splits"]["train"]} == {train_scene}
    assert "test" not in result["splits"]

    bad_csv = tmp_path / "split.csv"
    bad_csv.write_text("scene_name,camera_name,frame_id\n")
    with pytest.raises(DataError, match="split.csv: missing column.*included_in_public_release"):
        hypersim.read_split_csv(bad_csv)


# --- Virtual KITTI 2: the three official archives unpacked side by side, 112 x 70 ----------------------------


def make_vkitti2(root: Path) -> None:
    header = "frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]\n"
    # The variation without intrinsic.txt is a 1/5 copy of the 1242 x 375 release (its K: the published one, scaled).
    for scene, variation, with_txt, (width, height) in (
        ("Scene01", "clone", True, (112, 70)),
        ("Scene01", "fog", False, (248, 75)),
        ("Scene20", "clone", True, (112, 70)),
    ):
        for camera in (0, 1):
            for frame in (0, 1):
                stem = f"{scene}/{variation}/frames/%s/Camera_{camera}/%s_{frame:05d}"
                write_rgb(root / "vkitti_2.0.3_rgb" / (stem % ("rgb", "rgb") + ".jpg"), width, height, frame)
                if (scene, variation, camera, frame) == ("Scene01", "fog", 1, 1):
                    continue
                depth = np.full((height, width), 1234, dtype=np.uint16)
                depth[:20] = vkitti2.FAR_PLANE_CM
                write_png16(root / "vkitti_2.0.3_depth" / (stem % ("depth", "depth") + ".png"), depth)
        if with_txt:
            # Camera 1 of Scene01 changes its principal point between frames: per-frame K files.
            rows = [f"{f} 0 60.0 61.0 55.5 34.5" for f in (0, 1)]
            rows += [f"{f} 1 60.0 61.0 {55.5 + f if scene == 'Scene01' else 55.5} 34.5" for f in (0, 1)]
            txt = root / "vkitti_2.0.3_textgt" / scene / variation / "intrinsic.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            txt.write_text(header + "\n".join(rows) + "\n")


def test_vkitti2_centimetres_sky_and_per_camera_intrinsics(tmp_path):
    root = tmp_path / "vkitti2"
    make_vkitti2(root)
    result = prepare_dataset("vkitti2", root, root / "splits", val_scenes=("Scene20",))
    assert len(result["splits"]["val"]) == 2 and all("Scene20/clone" in s for s in result["splits"]["val"])
    assert len(result["splits"]["train"]) == 7  # Scene01: 2 variations x 2 cameras x 2 frames, one without depth
    reasons = sorted(reason for _, reason in result["skipped"])
    assert reasons == ["held out: only clone/Camera_0 of val scenes"] * 2 + ["no depth png"]
    assert any("Scene01/fog/Camera_0: no intrinsic.txt rows" in note for note in result["notes"])
    files = sorted(p.name for p in (root / "splits/intrinsics").iterdir())
    assert files == [
        "vkitti2_Scene01_clone_Camera_0.txt",
        "vkitti2_Scene01_clone_Camera_1_00000.txt",
        "vkitti2_Scene01_clone_Camera_1_00001.txt",
        "vkitti2_Scene20_clone_Camera_0.txt",
        "vkitti2_published_248x75.txt",
    ]
    assert (root / "splits/intrinsics/vkitti2_Scene01_clone_Camera_1_00001.txt").read_text().split()[2] == "56.5"

    val = build_dataset("vkitti2", "val", (70, 70), root=str(root))
    assert val.eval_protocol.max_depth == 80.0 and val.eval_protocol.crop == "none"
    sample = val[0]
    assert sample["depth"][30, 50].item() == pytest.approx(12.34, rel=1e-6)
    assert not sample["depth_valid"][:20].any() and sample["depth_valid"][20:].all()  # far plane = sky
    assert (sample["depth"][:20] == 0).all()
    assert_sample_K(sample, make_intrinsics(60.0, 61.0, 55.5, 34.5), 112, 70)

    train_set = build_dataset("vkitti2", "train", (56, 56), root=str(root), max_depth=80.0)
    fog = next(i for i, e in enumerate(train_set.entries) if "fog" in str(e.image))
    # Without intrinsic.txt: the published K, scaled to this copy's 248 x 75 images (it describes 1242 x 375).
    expected = scale_intrinsics(vkitti2.PUBLISHED_K, 248 / 1242, 75 / 375)
    np.testing.assert_allclose(train_set.entries[fog].intrinsics, expected, rtol=1e-12)
    np.testing.assert_allclose(vkitti2.published_intrinsics(1242, 375), vkitti2.PUBLISHED_K)
    sample = train_set[fog, 0]
    assert sample["image"].shape == (3, 56, 56) and sample["has_intrinsics"]

    bad = tmp_path / "intrinsic.txt"
    bad.write_text("frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]\n0 0 725.0 725.0 620.5\n")
    with pytest.raises(DataError, match=r"intrinsic.txt:2: expected 6 fields"):
        vkitti2.read_vkitti2_intrinsics(bad)


# --- KITTI: raw drives + annotated depth, 140 x 70 -----------------------------------------------------------

P_RECT_02 = "1.000000e+02 0.000000e+00 6.050000e+01 4.485728e+01 0.000000e+00 1.010000e+02 3.525000e+01 2.163791e-01"
P_RECT_02 += " 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03"


def make_kitti(root: Path) -> None:
    date = root / "2011_09_26"
    date.mkdir(parents=True)
    (date / "calib_cam_to_cam.txt").write_text(f"calib_time: 09-Jan-2012 13:57:47\nP_rect_02: {P_RECT_02}\n")
    for folder, drive, frames in (("train", "0001", (5, 6)), ("val", "0002", (5,)), ("train", "0009", (5,))):
        name = f"2011_09_26_drive_{drive}_sync"
        for frame in frames:
            if (drive, frame) != ("0001", 6):
                write_rgb(date / name / "image_02/data" / f"{frame:010d}.png", 140, 70, frame)
            depth = np.zeros((70, 140), dtype=np.uint16)
            depth[40:, ::2] = 3200  # sparse LiDAR: 12.5 m on every other column of the lower rows
            gt = root / "data_depth_annotated" / folder / name / "proj_depth/groundtruth/image_02" / f"{frame:010d}.png"
            write_png16(gt, depth)


def test_kitti_depth_calibration_and_eigen_split(tmp_path):
    root = tmp_path / "kitti"
    make_kitti(root)
    plain = prepare_dataset("kitti", root, root / "splits")
    assert {k: len(v) for k, v in plain["splits"].items()} == {"train": 2, "val": 1}
    assert [reason.split(" ")[:3] for _, reason in plain["skipped"]] == [["no", "raw", "image"]]

    eigen = tmp_path / "eigen_test_files.txt"
    eigen.write_text(
        "2011_09_26/2011_09_26_drive_0009_sync/image_02/data/0000000005.png "
        "2011_09_26_drive_0009_sync/proj_depth/groundtruth/image_02/0000000005.png 721.5377\n"
        "2011_09_26/2011_09_26_drive_0009_sync/image_02/data/0000000007.png\n"
    )
    result = prepare_dataset("kitti", root, root / "splits", eigen_test=eigen)
    assert {k: len(v) for k, v in result["splits"].items()} == {"train": 2, "val": 1, "test": 1}
    assert "drive_0009" in result["splits"]["val"][0] and result["splits"]["val"] == result["splits"]["test"]
    assert not any("drive_0009" in line for line in result["splits"]["train"])
    assert "Eigen test frame without annotated depth" in {reason for _, reason in result["skipped"]}

    val = build_dataset("kitti", "val", (70, 70), root=str(root))
    assert val.eval_protocol == EvalProtocol("garg", 1e-3, 80.0)
    sample = val[0]
    assert sample["depth"][50, 10].item() == 12.5 and sample["depth_valid"][50, 10]
    assert sample["depth"][50, 11] == 0 and not sample["depth_valid"][50, 11] and not sample["depth_valid"][:40].any()
    assert_sample_K(sample, make_intrinsics(100.0, 101.0, 60.5, 35.25), 140, 70)
    assert resolve_split("kitti", "test", root) == root / "splits/test.txt"

    (tmp_path / "calib.txt").write_text(f"P_rect_02: {P_RECT_02}\n")
    with pytest.raises(DataError, match=r"calib.txt: no 'P_rect_03:' line"):
        kitti.read_kitti_calib(tmp_path / "calib.txt", "03")
    eigen.write_text("2011_09_26/2011_09_26_drive_0009_sync/image_02/data/0000000005.png\n2011_09_26_drive_0009 5 l\n")
    with pytest.raises(DataError, match=r"eigen_test_files.txt:2: expected a raw image path"):
        kitti.read_eigen_list(eigen)
    np.testing.assert_allclose(kitti.read_kitti_depth(root / result["splits"]["val"][0].split()[1])[40, 0], 12.5)


# --- NYU Depth v2: sync (train) + official test split, 128 x 96 (640 x 480 / 5) -------------------------------


def make_nyu(root: Path) -> None:
    for folder, scene, frames in (("sync", "kitchen_0001", (0, 1, 2)), ("official_splits/test", "bathroom", (45,))):
        for frame in frames:
            write_rgb(root / folder / scene / f"rgb_{frame:05d}.jpg", 128, 96, frame)
            if frame == 2:
                continue
            depth = np.full((96, 128), 2500, dtype=np.uint16)
            depth[:, :8] = 0  # the Kinect's unmeasured border
            write_png16(root / folder / scene / f"sync_depth_{frame:05d}.png", depth)


def test_nyu_millimetres_fixed_camera_and_prepare_cli(tmp_path, capsys):
    root = tmp_path / "nyu"
    make_nyu(root)
    main(["nyu", "--root", str(root), "--out", str(root / "splits")])
    report = capsys.readouterr().out
    assert "nyu: wrote train 2, val 1, test 1 lines and 1 intrinsics file(s)" in report
    assert "1 x no sync_depth png, e.g. sync/kitchen_0001/rgb_00002.jpg" in report
    assert (root / "splits/val.txt").read_text() == (root / "splits/test.txt").read_text()

    val = build_dataset("nyu", "val", (70, 70), root=str(root))
    assert val.eval_protocol == EvalProtocol("eigen_nyu", 1e-3, 10.0)
    sample = val[0]
    assert sample["depth"][50, 60].item() == pytest.approx(2.5) and sample["depth_valid"][:, 8:].all()
    assert not sample["depth_valid"][:, :8].any()
    nyu_K = make_intrinsics(518.8579, 519.4696, 325.5824, 253.7362)
    assert_sample_K(sample, scale_intrinsics(nyu_K, 0.2, 0.2), 128, 96)
    np.testing.assert_allclose(nyu.read_nyu_depth(root / "sync/kitchen_0001/sync_depth_00000.png")[0, 8], 2.5)

    assert "training looks for lists in" not in report
    elsewhere = format_report("nyu", root, tmp_path / "lists", {"splits": {"val": []}, "intrinsics": {}, "skipped": []})
    assert (
        "warning: the val list is empty" in elsewhere and f"training looks for lists in {root / 'splits'}" in elsewhere
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no NYU frames"):
        prepare_dataset("nyu", tmp_path / "empty", tmp_path / "out")


def test_builders_need_a_root_and_lists_and_keep_the_protocol_range(tmp_path, caplog):
    with pytest.raises(DataError, match="--data-root DIR is required"):
        build_dataset("nyu", "val", (70, 70))
    with pytest.raises(DataError, match=r"no 'val' split for dataset 'kitti' .*python -m dataset.prepare kitti"):
        build_dataset("kitti", "val", (70, 70), "val", tmp_path)
    root = tmp_path / "nyu"
    make_nyu(root)
    prepare_dataset("nyu", root, root / "splits")
    # Training ground truth follows --max-depth (with a warning below the usual range); evaluation samples
    # keep every measured pixel so the protocol's range applies whatever --max-depth was.
    train_set = build_dataset("nyu", "train", (56, 56), root=str(root), max_depth=2.0)
    assert "below the usual 10 m" in caplog.text and train_set.max_depth == 2.0
    assert build_dataset("nyu", "val", (70, 70), root=str(root), max_depth=2.0)[0]["depth_valid"][:, 8:].all()


def test_eval_crops_of_the_protocols():
    garg = eval_crop_mask(375, 1242, kitti.EVAL_PROTOCOL.crop)
    rows, cols = garg.any(dim=1).nonzero()[:, 0], garg.any(dim=0).nonzero()[:, 0]
    assert (rows[0].item(), rows[-1].item() + 1, cols[0].item(), cols[-1].item() + 1) == (153, 371, 44, 1197)
    assert garg.sum().item() == (371 - 153) * (1197 - 44)
    eigen = eval_crop_mask(480, 640, nyu.EVAL_PROTOCOL.crop)
    rows, cols = eigen.any(dim=1).nonzero()[:, 0], eigen.any(dim=0).nonzero()[:, 0]
    assert (rows[0].item(), rows[-1].item() + 1, cols[0].item(), cols[-1].item() + 1) == (45, 471, 41, 601)
    assert eval_crop_mask(96, 128, hypersim.EVAL_PROTOCOL.crop).all()


def test_prepare_runs_as_a_module_without_warnings(tmp_path):
    root = tmp_path / "nyu"
    make_nyu(root)
    run = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "dataset.prepare",
            "nyu",
            "--root",
            str(root),
            "--out",
            str(root / "splits"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == "" and "wrote train 2" in run.stdout


def test_eval_only_on_a_named_dataset_uses_its_protocol(tmp_path):
    root = tmp_path / "nyu"
    make_nyu(root)
    prepare_dataset("nyu", root, root / "splits")
    torch.manual_seed(0)
    torch.save(DepthAnythingV2("vits", max_depth=10.0).state_dict(), tmp_path / "model.pth")
    args = train.get_args_parser().parse_args(
        [
            "--encoder", "vits", "--dataset", "nyu", "--data-root", str(root), "--img-size", "70",
            "--max-depth", "10", "--workers", "0", "--device", "cpu", "--eval-only",
            "--pretrained-from", str(tmp_path / "model.pth"), "--save-path", str(tmp_path / "run"),
        ]
    )  # fmt: skip
    train.main(args)
    assert (args.eval_crop, args.eval_min_depth, args.eval_max_depth) == ("eigen_nyu", 1e-3, 10.0)
    results = (tmp_path / "run/eval.json").read_text()
    assert '"abs_rel"' in results and "NaN" not in results
