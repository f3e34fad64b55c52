"""Sizes from file headers: images as decoded (EXIF orientation applied), depth maps, and bad headers."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest
from helpers import write_oriented_image

from dataset.headers import ImageHeader, exif_orientation, read_depth_header, read_image_header, size_mismatch
from dataset.io import DataError, read_image

RGB = np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8)  # H 30, W 50


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif", ".webp"])
def test_image_header_gives_the_decoded_size(tmp_path, suffix):
    path = tmp_path / f"i{suffix}"
    cv2.imwrite(str(path), RGB)
    assert read_image_header(path) == ImageHeader(50, 30, 1) == (*read_image(path).shape[1::-1], 1)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_applied_like_opencv(tmp_path, suffix, orientation):
    path = tmp_path / f"o{suffix}"
    write_oriented_image(path, RGB, orientation)
    header = read_image_header(path)
    assert header.orientation == orientation
    assert (header.height, header.width) == read_image(path).shape[:2]  # what OpenCV decodes
    assert (header.width, header.height) == ((30, 50) if orientation in (6, 8) else (50, 30))


def test_exif_parser_ignores_garbage():
    for garbage in (b"", b"XX" + bytes(20), b"MM\x00*\xff\xff\xff\xff"):
        assert exif_orientation(garbage) == 1


def test_bad_image_headers_are_problems(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "fake.jpg").write_bytes(b"<html>not a jpeg</html>")
    cv2.imwrite(str(tmp_path / "ok.jpg"), RGB)
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:20])
    for name, message in [("empty.png", "image file is empty"), ("fake.jpg", "not a valid JPG file"),
                          ("cut.jpg", "truncated")]:  # fmt: skip
        with pytest.raises(DataError, match=message):
            read_image_header(tmp_path / name)


def test_depth_headers_of_every_format(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros((30, 50), np.float32))
    np.save(tmp_path / "d1.npy", np.zeros((30, 50, 1), np.float64))
    cv2.imwrite(str(tmp_path / "d.png"), np.zeros((30, 50), np.uint16))
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["depth"] = np.zeros((30, 50), np.float32)
        f["other"] = np.zeros(3)
    for name in ("d.npy", "d1.npy", "d.png", "d.h5"):
        assert read_depth_header(tmp_path / name) == (30, 50), name
    assert read_depth_header(tmp_path / "d.exr") is None  # unknown type: no header check


def test_depth_headers_that_cannot_hold_a_depth_map(tmp_path):
    cv2.imwrite(str(tmp_path / "rgb.png"), RGB)
    np.save(tmp_path / "vol.npy", np.zeros((2, 3, 4), np.float32))
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"], f["b"] = np.zeros((2, 2)), np.zeros((2, 2))
    for name, message in [("rgb.png", "single-channel 16-bit, got 8-bit colour type 2"),
                          ("vol.npy", r"2-D \(H, W\) array, got shape \(2, 3, 4\)"), ("junk.npy", "not a valid .npy"),
                          ("two.h5", "expected a 'depth' dataset or exactly one")]:  # fmt: skip
        with pytest.raises(DataError, match=message):
            read_depth_header(tmp_path / name)


def test_size_mismatch_names_both_sizes_and_exif_when_swapped(tmp_path):
    plain = size_mismatch(tmp_path / "d.npy", (10, 10), tmp_path / "i.jpg", (30, 50), 1)
    assert plain.endswith("d.npy: depth is 10x10 but image " + str(tmp_path / "i.jpg") + " is 50x30 (W x H)")
    swapped = size_mismatch(tmp_path / "d.npy", (50, 30), tmp_path / "i.jpg", (30, 50), 6)
    assert "depth is 30x50 but image" in swapped and "EXIF orientation 6 turns it a quarter turn" in swapped
    assert "EXIF orientation tag" in size_mismatch(tmp_path / "d.npy", (50, 30), tmp_path / "i.jpg", (30, 50), None)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_an_image_header_is_read_opening_the_file_once(tmp_path, suffix, monkeypatch):
    """Issue 26: the header check and the size were read from two opens of each image."""
    import builtins

    path = tmp_path / f"i{suffix}"
    cv2.imwrite(str(path), RGB)
    opened, real_open = [], builtins.open
    monkeypatch.setattr(builtins, "open", lambda file, *a, **k: opened.append(file) or real_open(file, *a, **k))
    assert read_image_header(path) == ImageHeader(50, 30, 1)
    assert opened == [path]
