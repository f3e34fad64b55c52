"""An uploaded photo for the web demo (app.py): decoded as `run.py` decodes images (OpenCV, EXIF orientation
applied, so K describes the image as shown), checked, resized when too large, with its camera from the page's fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dataset.io import check_image_header
from depth_anything_v2 import PATCH_SIZE
from depth_anything_v2.geometry import scale_intrinsics
from inference.camera_inputs import EXIF, UNKNOWN, CameraInputError, camera_from_inputs, read_exif_camera

MAX_ASPECT = 4.0
# Network input short sides the page accepts, pixels.
INPUT_SIZES = (PATCH_SIZE * 5, PATCH_SIZE * 73)


class DemoInputError(ValueError):
    """An input the page cannot use, with what to do instead."""


@dataclass
class Camera:
    """The page's camera fields: mode (inference.camera_inputs.CAMERA_MODES), pixels, field of view in degrees."""

    mode: str = UNKNOWN
    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    fov_deg: float | None = None


@dataclass
class Photo:
    """An uploaded image ready for the model: BGR pixels (resized if too large), file-name stem, K in its pixels (None:
    unknown camera), where K came from, and notes for the page."""

    bgr: np.ndarray
    name: str
    K: np.ndarray | None
    camera_text: str
    notes: list[str]


def check_input_size(input_size: float) -> int:
    """The network short side as an int, or DemoInputError if it is no multiple of 14 within INPUT_SIZES."""
    size = int(input_size)
    if size != input_size or size % PATCH_SIZE or not INPUT_SIZES[0] <= size <= INPUT_SIZES[1]:
        raise DemoInputError(
            f"the input size must be a multiple of {PATCH_SIZE} between {INPUT_SIZES[0]} and {INPUT_SIZES[1]} px, "
            f"got {input_size:g}"
        )
    return size


def _stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)[:80] or "image"


def decode_upload(path: str | Path | None) -> np.ndarray:
    """(H, W, 3) uint8 BGR of an uploaded image, EXIF orientation applied; DemoInputError if it is none."""
    if path is None:
        raise DemoInputError("upload an image first")
    path = Path(path)
    problem = check_image_header(path)
    bgr = None if problem else cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DemoInputError(f"{path.name} is not an image this page can read ({problem or 'it does not decode'})")
    return bgr


def upload_info(path: str | Path | None, mode: str) -> tuple[str, float | None, float | None, str]:
    """What the page says about a new upload, its centre as the default (cx, cy), and the camera mode to show.

    The mode becomes EXIF when the EXIF data give a focal length in pixels, and leaves EXIF when they do not.
    """
    try:
        bgr = decode_upload(path)
    except DemoInputError as err:
        return f"**{err}**", None, None, mode
    height, width = bgr.shape[:2]
    exif = read_exif_camera(path)
    try:
        if exif is None:
            raise CameraInputError("no focal length in its EXIF data")
        focal, how = exif.focal_px(width, height)
        camera, mode = f"EXIF: {how}, fx = fy = {focal:.0f} px", EXIF
    except CameraInputError as err:
        camera, mode = str(err), UNKNOWN if mode == EXIF else mode
    return f"{width} x {height} px; {camera}", (width - 1) / 2, (height - 1) / 2, mode


def read_photo(path: str | Path | None, camera: Camera, max_size: int) -> Photo:
    """Decode an upload, resize it to at most `max_size` px on its long side, and give K for those pixels.

    Raises:
        DemoInputError: no file, a file that is not an image, an extreme aspect ratio.
        CameraInputError: camera fields that give no plausible K for the image.
    """
    bgr = decode_upload(path)
    path = Path(path)
    height, width = bgr.shape[:2]
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise DemoInputError(
            f"the image is {width} x {height} px: crop it to an aspect ratio of at most {MAX_ASPECT:g}"
        )
    K, source = camera_from_inputs(
        camera.mode, width, height, camera.fx, camera.fy, camera.cx, camera.cy, camera.fov_deg, read_exif_camera(path)
    )
    notes = []
    scale = max_size / max(width, height)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        if K is not None:
            K = scale_intrinsics(K, size[0] / width, size[1] / height)
        notes.append(
            f"The image is {width} x {height} px, larger than this page takes ({max_size} px on the long side): "
            f"it was resized to {size[0]} x {size[1]} px, the size of every output; K was scaled with it."
        )
    return Photo(bgr, _stem(path), K, source, notes)
