"""Readers: .npy, 16-bit .png with a scale, .h5; invalid values; intrinsics files; image headers."""

import cv2
import h5py
import numpy as np
import pytest

from dataset.io import DataError, check_image_header, read_depth, read_image, read_intrinsics
from depth_anything_v2.geometry import make_intrinsics, unproject, validate_intrinsics
from util.ply import read_ply, write_ply


def test_npy_depth_marks_invalid_values_as_zero(tmp_path):
    depth = np.array([[1.5, 0.0, -2.0], [np.nan, np.inf, 3.25]], dtype=np.float32)
    np.save(tmp_path / "d.npy", depth)
    np.testing.assert_array_equal(read_depth(tmp_path / "d.npy"), [[1.5, 0, 0], [0, 0, 3.25]])


def test_png_depth_is_multiplied_by_the_scale(tmp_path):
    raw = np.array([[256, 512], [0, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), raw)
    np.testing.assert_allclose(read_depth(tmp_path / "d.png", depth_scale=1 / 256), [[1, 2], [0, 65535 / 256]])


def test_integer_npy_depth_is_scaled_and_zero_stays_invalid(tmp_path):
    np.save(tmp_path / "mm.npy", np.array([[0, 1500], [65535, 2]], dtype=np.uint16))
    depth = read_depth(tmp_path / "mm.npy", depth_scale=1e-3)
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth, [[0, 1.5], [65.535, 0.002]], rtol=1e-6)


def test_eight_bit_png_depth_is_rejected(tmp_path):
    cv2.imwrite(str(tmp_path / "d.png"), np.ones((4, 4), dtype=np.uint8))
    with pytest.raises(DataError, match="d.png: depth png must be single-channel 16-bit"):
        read_depth(tmp_path / "d.png")


def test_h5_depth_named_or_only_dataset(tmp_path):
    with h5py.File(tmp_path / "named.h5", "w") as f:
        f["depth"] = np.full((2, 3), 2.0)
        f["other"] = np.zeros(3)
    with h5py.File(tmp_path / "only.hdf5", "w") as f:
        f["dataset"] = np.array([[np.nan, 4.0]])
    np.testing.assert_array_equal(read_depth(tmp_path / "named.h5"), np.full((2, 3), 2.0))
    np.testing.assert_array_equal(read_depth(tmp_path / "only.hdf5"), [[0.0, 4.0]])
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"], f["b"] = np.zeros(2), np.zeros(2)
    with pytest.raises(DataError, match="expected a 'depth' dataset or exactly one"):
        read_depth(tmp_path / "two.h5")


def test_intrinsics_npy_and_text_forms(tmp_path):
    K = np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]])
    np.save(tmp_path / "k.npy", K)
    (tmp_path / "k9.txt").write_text(" ".join(map(str, K.ravel())))
    (tmp_path / "k4.txt").write_text("500, 510, 320, 240")
    for name in ("k.npy", "k9.txt", "k4.txt"):
        np.testing.assert_array_equal(read_intrinsics(tmp_path / name), K)


@pytest.mark.parametrize(
    "K, message",
    [
        (np.eye(2), "must be a 3x3 matrix"),
        (np.array([[np.nan, 0, 1], [0, 1, 1], [0, 0, 1]]), "NaN or inf"),
        (np.array([[-5.0, 0, 1], [0, 5, 1], [0, 0, 1]]), "focal lengths must be positive"),
        (np.array([[5.0, 0, 1], [0, 5, 1], [0, 1, 1]]), "last row must be"),
    ],
)
def test_bad_intrinsics_are_reported(tmp_path, K, message):
    np.save(tmp_path / "k.npy", K)
    with pytest.raises(DataError, match=message):
        read_intrinsics(tmp_path / "k.npy")


def test_image_reading_and_header_check(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    cv2.imwrite(str(tmp_path / "red.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_image(tmp_path / "red.png"), rgb)
    assert check_image_header(tmp_path / "red.png") is None
    (tmp_path / "fake.jpg").write_bytes(b"not a jpeg at all")
    assert "not a valid JPG file" in check_image_header(tmp_path / "fake.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    assert check_image_header(tmp_path / "empty.png") == "image file is empty"
    with pytest.raises(DataError, match="fake.jpg: cannot read image"):
        read_image(tmp_path / "fake.jpg")


def test_ply_round_trip_of_unprojected_depth(tmp_path):
    K = make_intrinsics(50.0, 55.0, 2.0, 1.0)
    assert validate_intrinsics(K) is None
    depth = np.array([[2.0, 4.0, 1.0], [3.0, 0.5, 8.0]], dtype=np.float32)
    points = unproject(depth, K)
    assert points.shape == (2, 3, 3)
    np.testing.assert_allclose(points[1, 2], [(2 - 2.0) / 50 * 8, (1 - 1.0) / 55 * 8, 8.0])
    np.testing.assert_allclose(points[0, 0], [-2 / 50 * 2, -1 / 55 * 2, 2.0])
    colors = np.arange(18, dtype=np.uint8).reshape(6, 3)
    write_ply(tmp_path / "cloud.ply", points.reshape(-1, 3).astype(np.float32), colors)
    assert (tmp_path / "cloud.ply").read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex 6\n")
    read_points, read_colors = read_ply(tmp_path / "cloud.ply")
    np.testing.assert_array_equal(read_points, points.reshape(-1, 3).astype(np.float32))
    np.testing.assert_array_equal(read_colors, colors)
