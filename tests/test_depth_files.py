"""The web demo's pictures and files: colour bar against the depth colours, grayscale PNG, point clouds (full, and
the viewer preview), medians."""

from __future__ import annotations

import cv2
import numpy as np

from depth_anything_v2.geometry import make_intrinsics, unproject
from inference.depth_files import colour_bar, colour_depth, median_depth, write_grayscale_png, write_point_clouds
from util.ply import read_ply


def test_colour_bar_runs_through_the_colours_of_the_depth_map():
    bar = colour_bar(0.5, 8.0, metric=True, width=400)
    assert bar.shape == (56, 400, 3) and bar.dtype == np.uint8
    ends = colour_depth(np.array([[0.5, 8.0]]), metric=True, vmin=0.5, vmax=8.0)[0]
    np.testing.assert_array_equal(bar[10, 30], ends[0])  # near: red, left
    np.testing.assert_array_equal(bar[10, 369], ends[1])  # far: purple, right
    assert (bar[30:] < 128).any()  # the labels
    relative = colour_bar(0.0, 3.0, metric=False, width=400)
    np.testing.assert_array_equal(relative[10, 369], bar[10, 30])  # relative: large disparity (near) is red


def test_grayscale_png_is_near_white(tmp_path):
    depth = np.array([[1.0, 2.0], [3.0, np.nan]], dtype=np.float32)
    write_grayscale_png(tmp_path / "d.png", depth, metric=True)
    grey = cv2.imread(str(tmp_path / "d.png"), cv2.IMREAD_UNCHANGED)
    assert grey.shape == (2, 2) and grey[0, 0] == 255 and grey[1, 0] == 0 and grey[1, 1] == 0


def test_point_clouds_full_and_preview(tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 5, (60, 80)).astype(np.float32)
    depth[0, 0], depth[0, 1] = np.nan, 0.0
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    K = make_intrinsics(70.0, 70.0, 39.5, 29.5)
    write_point_clouds(tmp_path / "full.ply", tmp_path / "preview.ply", depth, K, image, preview=1200)
    points, colors = read_ply(tmp_path / "full.ply")
    assert len(points) == 60 * 80 - 2
    np.testing.assert_allclose(points, unproject(depth, K).reshape(-1, 3)[2:], rtol=1e-6)
    np.testing.assert_array_equal(colors, image[..., ::-1].reshape(-1, 3)[2:])
    preview, preview_colors = read_ply(tmp_path / "preview.ply")
    # Every second pixel each way (4800 / 1200 = 4 = 2 x 2), the first one invalid; all axes negated.
    assert len(preview) == 30 * 40 - 1
    np.testing.assert_allclose(preview, -unproject(depth, K)[::2, ::2].reshape(-1, 3)[1:], rtol=1e-6)
    np.testing.assert_array_equal(preview_colors, image[::2, ::2, ::-1].reshape(-1, 3)[1:])


def test_median_depth_skips_invalid_pixels():
    assert median_depth(np.array([np.nan, 0.0, 1.0, 2.0, 4.0, np.inf])) == 2.0
    assert np.isnan(median_depth(np.zeros((2, 2))))
