"""Synthetic scenes: the written layout, camera ranges per split, exact geometry, metric-period texture, CLI."""

from __future__ import annotations

import math
import sys

import cv2
import numpy as np

from dataset import GenericDatasetWithIntrinsics
from dataset.synthetic import TEXTURE_PERIOD_M, Scene, main, random_intrinsics, rotation, write_synthetic_dataset
from depth_anything_v2.geometry import make_intrinsics


def hfov_degrees(K: np.ndarray, width: int) -> float:
    return math.degrees(2 * math.atan(width / 2 / K[0, 0]))


def test_layout_and_independent_train_val_camera_ranges(tmp_path):
    out = write_synthetic_dataset(
        tmp_path / "scenes", n_train=4, n_val=3, size=(112, 84), hfov_range=(30, 40), val_hfov_range=(80, 90), seed=3
    )
    for split, count, (low, high) in (("train", 4, (30, 40)), ("val", 3, (80, 90))):
        lines = (out / "splits" / f"{split}.txt").read_text().splitlines()
        assert len(lines) == count
        for line in lines:
            image, depth, K = (out / p for p in line.split())
            assert cv2.imread(str(image)).shape == (84, 112, 3)
            depth = np.load(depth)
            assert depth.shape == (84, 112) and depth.dtype == np.float32
            assert (depth > 0.1).all() and (depth < 20).all()  # a closed room: every ray hits a surface
            assert low <= hfov_degrees(np.load(K), 112) <= high
    dataset = GenericDatasetWithIntrinsics(out / "splits" / "val.txt", mode="val", size=(70, 70))
    assert len(dataset) == 3 and dataset[0]["has_intrinsics"]


def test_same_seed_same_data(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", 2, 1, size=(70, 56), seed=5)
    b = write_synthetic_dataset(tmp_path / "b", 2, 1, size=(70, 56), seed=5)
    np.testing.assert_array_equal(np.load(a / "depths" / "train_00001.npy"), np.load(b / "depths" / "train_00001.npy"))


def test_raycast_hits_surfaces_with_planar_depth():
    rng = np.random.default_rng(0)
    for _ in range(3):
        scene = Scene.random(rng)
        K = random_intrinsics(rng, 98, 70, (30, 90))
        depth, points = scene.raycast(K, 98, 70)
        assert scene.surface_distance(points)[0].max() < 1e-6
        camera = points @ scene.R  # world -> camera axes (R is camera-to-world)
        np.testing.assert_allclose(camera[..., 2], depth, rtol=1e-5)
        v, u = np.mgrid[0:70, 0:98]
        np.testing.assert_allclose(K[0, 0] * camera[..., 0] / camera[..., 2] + K[0, 2], u, atol=1e-6)
        np.testing.assert_allclose(K[1, 1] * camera[..., 1] / camera[..., 2] + K[1, 2], v, atol=1e-6)


def test_texture_repeats_with_a_fixed_metric_period():
    room = np.array([[[-3.0, -1.5, -1.0], [3.0, 1.5, 6.0]]])
    scene = Scene(room, np.full((1, 6, 3), 0.8), rotation(0.0, 0.0, 0.0))
    quarter = TEXTURE_PERIOD_M / 4
    floor = np.array([[0.3 + quarter / 2, 1.5, 2.0 + quarter / 2]])  # y = 1.5 is the floor (y points down)
    step_x = np.array([[TEXTURE_PERIOD_M, 0, 0]])
    np.testing.assert_allclose(scene.color_at(floor + step_x), scene.color_at(floor), atol=1e-9)
    np.testing.assert_allclose(scene.color_at(floor + 3 * step_x), scene.color_at(floor), atol=1e-9)
    half_step = np.array([[TEXTURE_PERIOD_M / 2, 0, 0]])
    assert np.abs(scene.color_at(floor + half_step) - scene.color_at(floor)).max() > 0.1


def test_wider_lens_sees_finer_texture():
    """Apparent texture frequency follows the focal length (here 2.15x), which is what makes intrinsics matter."""
    room = np.array([[[-4.0, -1.5, -1.0], [4.0, 1.5, 6.0]]])
    scene = Scene(room, np.random.default_rng(0).uniform(0.3, 0.9, (1, 6, 3)), rotation(0.0, 0.0, 0.0))
    gradients = []
    for hfov in (30, 60):
        f = 56 / math.tan(math.radians(hfov) / 2)
        gray = cv2.cvtColor(scene.render(make_intrinsics(f, f, 55.5, 41.5), 112, 84)[0], cv2.COLOR_RGB2GRAY)
        gradients.append(np.abs(np.diff(gray.astype(np.float32), axis=1)).mean())
    assert gradients[1] > 1.5 * gradients[0]


def test_cli(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli"
    argv = ["synthetic", "--out", str(out), "--n-train", "2", "--n-val", "1", "--width", "70", "--height", "56"]
    monkeypatch.setattr(sys, "argv", argv + ["--val-hfov", "100", "110"])
    main()
    assert "wrote 2 train and 1 val scenes" in capsys.readouterr().out
    assert hfov_degrees(np.load(out / "intrinsics" / "val_00000.npy"), 70) > 99
