"""Readers for images, depth maps and intrinsics. Errors are `DataError`s that name the file and the problem."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from depth_anything_v2.geometry import make_intrinsics, validate_intrinsics

if TYPE_CHECKING:
    import h5py

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEPTH_SUFFIXES = (".npy", ".png", ".h5", ".hdf5")
_MAGIC = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".bmp": (b"BM",),
    ".tif": (b"II*\x00", b"MM\x00*"),
    ".tiff": (b"II*\x00", b"MM\x00*"),
    ".webp": (b"RIFF",),
}


# How torch's DataLoader re-raises an exception of a worker in the main process: `type(err)(text)`, where text is
# "Caught DataError in DataLoader worker process N.\nOriginal Traceback ...\n<module>.DataError: <message>".
_WORKER_TEXT = re.compile(r"^Caught DataError in ")
_WORKER_MESSAGE = re.compile(r"^(?:[\w.]+\.)?DataError: ", re.M)


class DataError(ValueError):
    """A data file that cannot be used; the message names the file (and list line) and what is wrong.

    A DataError raised in a DataLoader worker reaches the main process with the same one-line message: the
    worker's traceback that torch puts in front of it is kept apart, in `worker_traceback`.
    """

    def __init__(self, message: str = "") -> None:
        self.worker_traceback = None
        if isinstance(message, str) and _WORKER_TEXT.match(message):
            starts = list(_WORKER_MESSAGE.finditer(message))
            if starts:
                self.worker_traceback = message
                message = message[starts[-1].end() :].rstrip("\n")
        super().__init__(message)


def first_existing_file(candidates: list[Path], what: str, hint: str) -> Path:
    """The first of `candidates` that is a file; otherwise a DataError naming `what`, every path tried and `hint`."""
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(f"no {what} (tried {tried}); {hint}")


@contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn the OSError / ValueError of reading `path` into a DataError naming it and `what` it should hold."""
    try:
        yield
    except DataError:
        raise
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read {what} ({err})") from None


def check_image_header(path: Path, head: bytes | None = None) -> str | None:
    """Cheap check (8 bytes, `head` when the caller read them): None if the file starts like an image of its
    suffix, else the problem."""
    magic = _MAGIC.get(path.suffix.lower())
    if magic is None:
        return f"unsupported image type {path.suffix!r} (use one of {', '.join(IMAGE_SUFFIXES)})"
    if head is None:
        with open(path, "rb") as f:
            head = f.read(8)
    if not head:
        return "image file is empty"
    if not head.startswith(magic):
        return f"not a valid {path.suffix.lstrip('.').upper()} file (wrong header bytes)"
    return None


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; EXIF orientation is applied (cv2 default), so K must describe the oriented image."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: cannot read image (missing, corrupt or unsupported)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_depth(path: str | Path, depth_scale: float = 1.0) -> np.ndarray:
    """(H, W) float32 depth in metres; invalid values (0, negative, NaN, inf) become 0.

    .npy: metres (x depth_scale); .png: 16-bit integers x depth_scale (e.g. 1/256 for KITTI, 1/1000 for mm);
    .h5/.hdf5: the dataset named 'depth', or the only dataset in the file (x depth_scale).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    with _reading(path, "depth"):
        if suffix == ".npy":
            depth = np.load(path, allow_pickle=False)
        elif suffix == ".png":
            depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if depth is None:
                raise DataError(f"{path}: cannot read depth png")
            if depth.dtype != np.uint16 or depth.ndim != 2:
                raise DataError(f"{path}: depth png must be single-channel 16-bit, got {depth.dtype} {depth.shape}")
        elif suffix in (".h5", ".hdf5"):
            depth = _read_h5(path)
        else:
            raise DataError(f"{path}: unsupported depth type {suffix!r} (use .npy, 16-bit .png, .h5)")
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise DataError(f"{path}: depth must be a 2-D (H, W) array, got shape {depth.shape}")
    scaled = depth.astype(np.float32) * np.float32(depth_scale)
    if np.issubdtype(depth.dtype, np.integer) and depth_scale > 0:  # finite: only 0 or negative can be invalid
        return np.maximum(scaled, np.float32(0), out=scaled)
    return clean_depth(scaled)


def clean_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) depth in metres -> float32 with every invalid value (NaN, inf, 0, negative) set to 0."""
    depth = np.asarray(depth, dtype=np.float32)
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0))


def _read_h5(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        try:
            return h5_depth_dataset(f)[()]
        except DataError as err:
            raise DataError(f"{path}: {err}") from None


def h5_depth_dataset(f: h5py.File) -> h5py.Dataset:
    """The depth map of an open HDF5 file: its dataset named 'depth', or its only dataset (DataError otherwise)."""
    import h5py

    if "depth" in f:
        return f["depth"]
    names = [name for name in f if isinstance(f[name], h5py.Dataset)]
    if len(names) != 1:
        raise DataError(f"expected a 'depth' dataset or exactly one dataset, found {names}")
    return f[names[0]]


def read_intrinsics(path: str | Path) -> np.ndarray:
    """(3, 3) float64 K from a .npy 3x3, or a .txt with 9 numbers (row-major) or 4 numbers `fx fy cx cy`."""
    path = Path(path)
    with _reading(path, "intrinsics"):
        if path.suffix.lower() == ".npy":
            K = np.load(path, allow_pickle=False)
        else:
            values = np.array(path.read_text().replace(",", " ").split(), dtype=np.float64)
            if values.size == 4:
                K = make_intrinsics(*values)
            elif values.size == 9:
                K = values.reshape(3, 3)
            else:
                raise DataError(f"{path}: intrinsics text must hold 9 numbers or 4 (fx fy cx cy), found {values.size}")
    problem = validate_intrinsics(K)
    if problem:
        raise DataError(f"{path}: {problem}")
    return np.asarray(K, dtype=np.float64)
