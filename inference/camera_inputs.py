"""The camera of an uploaded photo as the web demo takes it: unknown, fx fy cx cy, a field of view, or EXIF.

Every K here is in pixels of the image as OpenCV decodes it (EXIF orientation applied), OpenCV convention: the
centre of pixel (u, v) is at (u, v). A field left blank or at 0 counts as not given (a Gradio number field cannot
start empty: it shows and sends 0): fy is then fx, the principal point the image centre ((W - 1) / 2, (H - 1) / 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from depth_anything_v2.geometry import OFFCENTRE_FLAG, canonical_intrinsics, intrinsics_problem, make_intrinsics

UNKNOWN, PIXELS, FOV, EXIF = "unknown", "fx fy cx cy", "field of view", "EXIF"
CAMERA_MODES = (UNKNOWN, PIXELS, FOV, EXIF)
WEB_OFFCENTRE_FIX = f"run it with run.py {OFFCENTRE_FLAG}: this page takes principal points near the centre only"
# Focal lengths of the "what does the camera do" runs, as multiples of the image's focal length.
FOCAL_FACTORS = (0.5, 1.0, 2.0)

_EXIF_IFD = 0x8769
_ORIENTATION, _MAKE, _MODEL = 0x0112, 0x010F, 0x0110
_FOCAL_LENGTH, _FOCAL_35MM = 0x920A, 0xA405
_FOCAL_PLANE_X_RES, _FOCAL_PLANE_UNIT, _EXIF_WIDTH = 0xA20E, 0xA210, 0xA002
# FocalPlaneResolutionUnit -> millimetres per unit (2: inch, 3: cm, 4: mm, 5: micrometre).
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}
# The diagonal of a 36 x 24 mm frame: a "35 mm equivalent" focal length keeps the diagonal field of view.
_FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)


class CameraInputError(ValueError):
    """A camera the page cannot use, with what to change."""


@dataclass(frozen=True)
class ExifCamera:
    """What a photo's EXIF says about its lens and sensor (None where a tag is absent).

    Attributes:
        focal_mm: FocalLength, millimetres.
        focal_35mm: FocalLengthIn35mmFilm, millimetres of the 35 mm equivalent.
        sensor_px_per_mm: FocalPlaneXResolution in pixels per millimetre of the sensor, at `exif_width` pixels.
        exif_width: PixelXDimension, the width in pixels the focal plane resolution refers to (None: the file's).
        rotated: the EXIF orientation turns the image by 90 degrees (the decoded width is the stored height).
        camera: make and model, for the description.
    """

    focal_mm: float | None
    focal_35mm: float | None
    sensor_px_per_mm: float | None
    exif_width: int | None
    rotated: bool
    camera: str

    def focal_px(self, width: int, height: int) -> tuple[float, str]:
        """Focal length in pixels of the decoded width x height image, and how it was found.

        Raises:
            CameraInputError: the tags do not give a focal length in pixels.
        """
        if self.focal_mm and self.sensor_px_per_mm:
            stored_width = height if self.rotated else width
            scale = stored_width / self.exif_width if self.exif_width else 1.0
            focal = self.focal_mm * self.sensor_px_per_mm * scale
            sensor = (self.exif_width or stored_width) / self.sensor_px_per_mm
            return focal, f"{self.focal_mm:g} mm lens, sensor {sensor:.1f} mm wide"
        if self.focal_35mm:
            focal = self.focal_35mm * math.hypot(width, height) / _FULL_FRAME_DIAGONAL_MM
            return focal, f"{self.focal_35mm:g} mm (35 mm equivalent)"
        if self.focal_mm:
            raise CameraInputError(
                f"EXIF gives the focal length ({self.focal_mm:g} mm) but no sensor size or 35 mm equivalent, so not "
                "the focal length in pixels: enter the field of view or fx in pixels instead"
            )
        raise CameraInputError("the image has no focal length in its EXIF data: choose another camera input")


def _rational(value: object) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def read_exif_camera(path: str | Path) -> ExifCamera | None:
    """The lens and sensor tags of an image file, or None if it has no focal length tag (or is not readable)."""
    try:
        with Image.open(path) as image:
            exif = image.getexif()
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    tags = exif.get_ifd(_EXIF_IFD)
    focal_mm, focal_35mm = _rational(tags.get(_FOCAL_LENGTH)), _rational(tags.get(_FOCAL_35MM))
    if focal_mm is None and focal_35mm is None:
        return None
    resolution, unit = _rational(tags.get(_FOCAL_PLANE_X_RES)), _UNIT_MM.get(tags.get(_FOCAL_PLANE_UNIT, 2))
    width = tags.get(_EXIF_WIDTH)
    return ExifCamera(
        focal_mm=focal_mm,
        focal_35mm=focal_35mm,
        sensor_px_per_mm=resolution / unit if resolution and unit else None,
        exif_width=int(width) if isinstance(width, int) and width > 0 else None,
        rotated=exif.get(_ORIENTATION, 1) in (5, 6, 7, 8),
        camera=" ".join(str(exif.get(tag, "")).strip("\x00 ") for tag in (_MAKE, _MODEL)).strip(),
    )


def _number(name: str, value: float | None, default: float | None = None, unit: str = "pixels") -> float:
    if value is None or value == 0 or math.isnan(value):
        if default is None:
            raise CameraInputError(f"{name} is empty: enter it in {unit}")
        return default
    return float(value)


def camera_from_inputs(
    mode: str,
    width: int,
    height: int,
    fx: float | None = None,
    fy: float | None = None,
    cx: float | None = None,
    cy: float | None = None,
    fov_deg: float | None = None,
    exif: ExifCamera | None = None,
) -> tuple[np.ndarray | None, str]:
    """K of a width x height image from the page's camera fields, and one line saying where it came from.

    Args:
        mode: one of CAMERA_MODES.
        width, height: the decoded image's size in pixels.
        fx, fy, cx, cy: pixels (PIXELS mode); fy defaults to fx, cx and cy to the image centre (None or 0: default).
        fov_deg: horizontal field of view in degrees (FOV mode); square pixels, centred principal point.
        exif: the image's EXIF camera (EXIF mode).

    Returns:
        ((3, 3) float64 K, or None for an unknown camera; description).

    Raises:
        CameraInputError: a missing or implausible value, or a K that does not fit the image.
    """
    centre = ((width - 1) / 2, (height - 1) / 2)
    if mode == UNKNOWN:
        return None, "camera unknown"
    if mode == PIXELS:
        focal = _number("fx", fx)
        K = make_intrinsics(focal, _number("fy", fy, focal), _number("cx", cx, centre[0]), _number("cy", cy, centre[1]))
        source = "K as entered"
    elif mode == FOV:
        fov = _number("the field of view", fov_deg, unit="degrees")
        if not 0 < fov < 180:
            raise CameraInputError(f"a horizontal field of view must lie between 0 and 180 degrees, got {fov:g}")
        focal = width / (2 * math.tan(math.radians(fov) / 2))
        K = make_intrinsics(focal, focal, *centre)
        source = f"{fov:g} degrees horizontal field of view"
    elif mode == EXIF:
        if exif is None:
            raise CameraInputError("the image has no focal length in its EXIF data: choose another camera input")
        focal, how = exif.focal_px(width, height)
        K = make_intrinsics(focal, focal, *centre)
        source = f"EXIF{' of ' + exif.camera if exif.camera else ''}: {how}"
    else:
        raise CameraInputError(f"unknown camera input {mode!r}; choose one of {', '.join(CAMERA_MODES)}")
    problem = intrinsics_problem(K, width, height, offcentre_fix=WEB_OFFCENTRE_FIX)
    if problem:
        raise CameraInputError(f"K does not fit this {width} x {height} px image: {problem}")
    return K, f"{source}: fx {K[0, 0]:.1f}, fy {K[1, 1]:.1f}, cx {K[0, 2]:.1f}, cy {K[1, 2]:.1f} px"


def focal_sweep(K: np.ndarray | None, width: int, height: int) -> list[tuple[float, np.ndarray]]:
    """(factor, K with fx and fy times factor) for each of FOCAL_FACTORS; the principal point stays.

    Args:
        K: the image's (3, 3) K, or None for an unknown camera: the sweep then starts from the canonical guess
            (focal max(W, H) px, centred principal point).
        width, height: the image's size in pixels.
    """
    base = canonical_intrinsics(height, width) if K is None else np.asarray(K, dtype=np.float64)
    sweep = []
    for factor in FOCAL_FACTORS:
        scaled = base.copy()
        scaled[0, 0] *= factor
        scaled[1, 1] *= factor
        sweep.append((factor, scaled))
    return sweep
