"""Image and depth sizes read from file headers, without decoding the pixels (the start-up size checks).

Images report the size `read_image` returns: OpenCV applies the EXIF orientation of JPEG and PNG files when it
decodes them, so an orientation of 5-8 (a quarter turn) swaps width and height relative to the stored pixels.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, NamedTuple

import cv2
import numpy as np

from .io import DataError, check_image_header, h5_depth_dataset

# EXIF orientations that turn the image by a quarter turn when decoded (transpose, rotate 90, transverse, 270).
QUARTER_TURNS = frozenset((5, 6, 7, 8))
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, ...): 0xC0-0xCF except DHT, JPG and DAC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageHeader(NamedTuple):
    """The size of an image as decoded, in pixels, and its EXIF orientation (1 when absent)."""

    width: int
    height: int
    orientation: int = 1


def read_image_header(path: Path) -> ImageHeader:
    """Size of the image `read_image` returns, from the PNG/JPEG/BMP header (other types are decoded).

    Raises:
        DataError: the file is empty, has the wrong header bytes for its suffix, or its header is truncated; the
            message is the problem alone (callers add the list line and the path).
    """
    suffix = path.suffix.lower()
    with open(path, "rb") as f:
        problem = check_image_header(path, f.read(8))
        if problem:
            raise DataError(problem)
        if suffix == ".png":
            width, height, _, _, orientation = _png_header(f)
            return _oriented(width, height, orientation)
        if suffix in (".jpg", ".jpeg"):
            return _oriented(*_jpeg_header(f))
        if suffix == ".bmp":
            width, height = _unpack("<ii", f, 18)
            return ImageHeader(abs(width), abs(height))
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError("cannot read image (corrupt or unsupported)")
    return ImageHeader(image.shape[1], image.shape[0])


def read_depth_header(path: Path) -> tuple[int, int] | None:
    """(height, width) of a depth map from its header: .npy, 16-bit .png, .h5 (its 'depth' or only dataset).

    Returns None for other types. Raises DataError (the problem alone) for a header that cannot hold a depth map:
    a PNG that is not single-channel 16-bit, an array that is not (H, W) or (H, W, 1), a truncated header.
    """
    suffix = path.suffix.lower()
    if suffix == ".npy":
        shape = _npy_shape(path)
    elif suffix == ".png":
        with open(path, "rb") as f:
            if f.read(8) != _PNG_SIGNATURE:
                raise DataError("not a PNG file (wrong header bytes)")
            f.seek(0)
            width, height, bit_depth, colour_type, _ = _png_header(f)
        if bit_depth != 16 or colour_type != 0:
            raise DataError(
                f"depth png must be single-channel 16-bit, got {bit_depth}-bit colour type {colour_type} "
                "(0: grey, 2: RGB, 4: grey + alpha, 6: RGBA)"
            )
        shape = (height, width)
    elif suffix in (".h5", ".hdf5"):
        shape = _h5_shape(path)
    else:
        return None
    if len(shape) == 3 and shape[-1] == 1:
        shape = shape[:2]
    if len(shape) != 2:
        raise DataError(f"depth must be a 2-D (H, W) array, got shape {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def size_mismatch(
    depth_path: Path, depth_hw: tuple[int, int], image_path: Path, image_hw: tuple[int, int], orientation: int | None
) -> str:
    """The message for a depth map of another size than its image: both sizes (W x H), and when they are swapped
    the likely cause, the image's EXIF orientation (`orientation`, None when unknown)."""
    (dh, dw), (ih, iw) = depth_hw, image_hw
    message = f"{depth_path}: depth is {dw}x{dh} but image {image_path} is {iw}x{ih} (W x H)"
    if (dh, dw) != (iw, ih):
        return message
    if orientation in QUARTER_TURNS:
        return (
            f"{message}: swapped, because the image's EXIF orientation {orientation} turns it a quarter turn when "
            "it is decoded; save the image upright without the orientation tag, or turn the depth map (and K) too"
        )
    return f"{message}: swapped; is one of them turned a quarter turn (an EXIF orientation tag lost or applied)?"


def _oriented(width: int, height: int, orientation: int) -> ImageHeader:
    if orientation in QUARTER_TURNS:
        return ImageHeader(height, width, orientation)
    return ImageHeader(width, height, orientation)


def _unpack(fmt: str, f: BinaryIO, offset: int | None = None) -> tuple:
    if offset is not None:
        f.seek(offset)
    data = f.read(struct.calcsize(fmt))
    if len(data) < struct.calcsize(fmt):
        raise DataError("truncated image header")
    return struct.unpack(fmt, data)


def _png_header(f: BinaryIO) -> tuple[int, int, int, int, int]:
    """(width, height, bit depth, colour type, EXIF orientation) from the chunks before the pixel data."""
    f.seek(8)
    length, kind = _unpack(">I4s", f)
    if kind != b"IHDR":
        raise DataError("PNG without an IHDR chunk")
    width, height, bit_depth, colour_type = _unpack(">IIBB", f)
    orientation = 1
    f.seek(8 + 8 + length + 4)
    while True:
        head = f.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"eXIf":
            orientation = exif_orientation(f.read(length))
            f.seek(4, 1)
        else:
            f.seek(length + 4, 1)
    return width, height, bit_depth, colour_type, orientation


def _jpeg_header(f: BinaryIO) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) from the markers before the first scan."""
    f.seek(2)
    orientation = 1
    while True:
        byte = f.read(1)
        while byte == b"\xff":  # fill bytes before a marker
            byte = f.read(1)
        if not byte:
            raise DataError("truncated JPEG header (no frame size before the end of the file)")
        marker = byte[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            continue
        (length,) = _unpack(">H", f)
        if length < 2:
            raise DataError(f"corrupt JPEG header (segment length {length})")
        if marker in _SOF_MARKERS:
            height, width = _unpack(">xHH", f)
            return width, height, orientation
        if marker == 0xDA:
            raise DataError("JPEG without a frame header before its scan")
        if marker == 0xE1:
            segment = f.read(length - 2)
            if segment.startswith(b"Exif\x00\x00"):
                orientation = exif_orientation(segment[6:])
        else:
            f.seek(length - 2, 1)


def exif_orientation(tiff: bytes) -> int:
    """The orientation tag (0x0112) of an EXIF block (TIFF header and first IFD); 1 when absent or unreadable."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(f"{order}I", tiff, 4)
    if offset + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(f"{order}H", tiff, offset)
    for i in range(count):
        entry = offset + 2 + 12 * i
        if entry + 12 > len(tiff):
            break
        tag, kind = struct.unpack_from(f"{order}HH", tiff, entry)
        if tag == 0x0112 and kind == 3:  # SHORT
            (value,) = struct.unpack_from(f"{order}H", tiff, entry + 8)
            return value if 1 <= value <= 8 else 1
    return 1


def _npy_shape(path: Path) -> tuple[int, ...]:
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = read(f)
        except ValueError as err:
            raise DataError(f"not a valid .npy file ({err})") from None
    return shape


def _h5_shape(path: Path) -> tuple[int, ...]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return h5_depth_dataset(f).shape
    except OSError as err:
        raise DataError(f"cannot read HDF5 depth ({err})") from None
