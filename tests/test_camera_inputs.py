"""The web demo's camera fields -> K: field of view, pixels with defaults, EXIF focal length and sensor data (also
rotated and downscaled photos), the messages for values that do not fit, and the halved / doubled focal lengths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from inference.camera_inputs import (
    EXIF,
    FOV,
    PIXELS,
    UNKNOWN,
    CameraInputError,
    ExifCamera,
    camera_from_inputs,
    focal_sweep,
    read_exif_camera,
)


def test_field_of_view_and_pixels_with_defaults():
    K, text = camera_from_inputs(FOV, 640, 480, fov_deg=90.0)
    np.testing.assert_allclose(K, [[320, 0, 319.5], [0, 320, 239.5], [0, 0, 1]])
    assert text.startswith("90 degrees horizontal field of view: fx 320.0")
    K, _ = camera_from_inputs(PIXELS, 640, 480, fx=500.0, fy=0.0, cx=None, cy=float("nan"))
    np.testing.assert_allclose(K, [[500, 0, 319.5], [0, 500, 239.5], [0, 0, 1]])
    assert camera_from_inputs(UNKNOWN, 640, 480) == (None, "camera unknown")


@pytest.mark.parametrize(
    "mode, values, message",
    [
        (PIXELS, {}, "fx is empty: enter it in pixels"),
        (PIXELS, {"fx": 0.0}, "fx is empty"),
        (FOV, {"fov_deg": 0.0}, "the field of view is empty: enter it in degrees"),
        (PIXELS, {"fx": 4.0}, "is K in millimetres"),
        (PIXELS, {"fx": 0.9, "cx": 0.5, "cy": 0.5}, "look normalised by the image size"),
        (PIXELS, {"fx": 500.0, "cx": 1920.0}, "cx=1920 lies far outside the image"),
        (PIXELS, {"fx": 500.0, "cx": 500.0}, "cx=500 lies 28% .*run it with run.py --allow-offcentre-principal-point"),
        (FOV, {"fov_deg": 180.0}, "between 0 and 180 degrees"),
        (EXIF, {}, "no focal length in its EXIF data"),
        ("fisheye", {}, "unknown camera input"),
    ],
)
def test_values_that_do_not_fit_the_image_get_a_message(mode, values, message):
    with pytest.raises(CameraInputError, match=message):
        camera_from_inputs(mode, 640, 480, **values)


def test_exif_sensor_data_of_a_downscaled_and_of_a_rotated_photo():
    # 4 mm lens, 250 px per mm of sensor at 1280 px width; the file is 640 px wide: f = 4 * 250 / 2 px.
    camera = ExifCamera(4.0, None, 250.0, 1280, rotated=False, camera="Phone")
    assert camera.focal_px(640, 480) == (500.0, "4 mm lens, sensor 5.1 mm wide")
    # The same sensor turned a quarter by the EXIF orientation: the decoded height is the stored width.
    assert ExifCamera(4.0, None, 250.0, 1280, rotated=True, camera="").focal_px(480, 640)[0] == 500.0
    K, text = camera_from_inputs(EXIF, 640, 480, exif=camera)
    assert K[0, 0] == K[1, 1] == 500.0 and text.startswith("EXIF of Phone: 4 mm lens")


def test_exif_35mm_equivalent_and_focal_length_alone():
    focal, how = ExifCamera(None, 28.0, None, None, False, "").focal_px(4000, 3000)
    assert focal == pytest.approx(28.0 * 5000 / math.hypot(36, 24)) and how == "28 mm (35 mm equivalent)"
    with pytest.raises(CameraInputError, match="no sensor size or 35 mm equivalent"):
        ExifCamera(4.2, None, None, None, False, "").focal_px(4000, 3000)


def test_read_exif_camera_from_a_jpeg(tmp_path):
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Maker", "Model 7", 6  # make, model, orientation: a quarter turn
    # FocalLength, FocalPlaneXResolution (px per cm), FocalPlaneResolutionUnit (cm), PixelXDimension.
    exif.get_ifd(0x8769).update({0x920A: 4.0, 0xA20E: 2500.0, 0xA210: 3, 0xA002: 1280})
    Image.new("RGB", (64, 48)).save(tmp_path / "phone.jpg", exif=exif)
    camera = read_exif_camera(tmp_path / "phone.jpg")
    assert camera == ExifCamera(4.0, None, 250.0, 1280, rotated=True, camera="Maker Model 7")
    Image.new("RGB", (64, 48)).save(tmp_path / "plain.jpg")
    assert read_exif_camera(tmp_path / "plain.jpg") is None
    (tmp_path / "notes.txt").write_text("no image")
    assert read_exif_camera(tmp_path / "notes.txt") is None


def test_focal_sweep_scales_the_focal_length_and_keeps_the_principal_point():
    K, _ = camera_from_inputs(PIXELS, 640, 480, fx=500.0, fy=520.0, cx=300.0, cy=250.0)
    sweep = focal_sweep(K, 640, 480)
    assert [factor for factor, _ in sweep] == [0.5, 1.0, 2.0]
    for factor, scaled in sweep:
        np.testing.assert_allclose(scaled, [[500 * factor, 0, 300], [0, 520 * factor, 250], [0, 0, 1]])
    # Unknown camera: the sweep starts from the canonical "no camera" K (focal max(W, H), centred).
    assert focal_sweep(None, 640, 480)[2][1][0, 0] == 1280.0
