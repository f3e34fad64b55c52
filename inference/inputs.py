"""What inference runs on: images and videos from a path, folder or list; the camera of each; the output folder.

Every problem is a DataError that names the file or the flag, the value and what to do, raised before any work
where it can be known then (the output folder, a single K against the first input's size).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from dataset.headers import read_image_header
from dataset.io import IMAGE_SUFFIXES, DataError, read_intrinsics
from depth_anything_v2.geometry import intrinsics_problem, make_intrinsics, scale_intrinsics, validate_intrinsics

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
Listed = list[tuple[Path, str]]


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def list_inputs(spec: str, flag: str = "--img-path") -> tuple[Listed, Listed]:
    """(images, videos) as (path, where it was listed: "" or "<list> line <n>") from a file, a folder or a .txt list.

    A file is a video if its suffix is one of VIDEO_SUFFIXES, else an image. A list holds one path per line; blank
    lines and lines starting with # are skipped, and relative paths are relative to the list's folder. Folders are
    not searched recursively; their files of other types are skipped.
    """
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        images = [(p, "") for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        videos = [(p, "") for p in files if is_video(p)]
        if not images and not videos:
            kinds = f"images ({', '.join(IMAGE_SUFFIXES)}) or videos ({', '.join(VIDEO_SUFFIXES)})"
            raise DataError(f"{path}: no {kinds} in this folder")
        return images, videos
    if not path.is_file():
        raise DataError(f"{path}: {flag} is not a file or a folder")
    if path.suffix.lower() != ".txt":
        return ([], [(path, "")]) if is_video(path) else ([(path, "")], [])
    listed = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            item = Path(line) if Path(line).is_absolute() else path.parent / line
            listed.append((item, f"{path} line {number}"))
    if not listed:
        raise DataError(f"{path}: the image list is empty")
    return [e for e in listed if not is_video(e[0])], [e for e in listed if is_video(e[0])]


def frame_size(path: Path) -> tuple[int, int] | None:
    """(width, height) in pixels of an image as decoded (from its header where it has one) or of a video's frames,
    or None if it cannot be read."""
    if is_video(path):
        capture = cv2.VideoCapture(str(path))
        size = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        capture.release()
        return size if min(size) > 0 else None
    try:
        header = read_image_header(path)
    except (DataError, OSError):
        return None
    return header.width, header.height


def check_writable_folder(path: str | Path, flag: str = "--outdir") -> None:
    """Raise DataError unless `path` is a folder this process can write in, or one it can create.

    Nothing is created: the nearest existing folder on the path gets a temporary test file.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{flag} {path}: is a file, not a folder; give a folder (it is created if missing)")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise DataError(f"{flag} {path}: {existing} is a file, so no folder can be made below it; give another folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise DataError(
            f"{flag} {path}: cannot write in {existing} ({err.strerror or err}); choose a folder you can write to"
        ) from None


class Failures:
    """Inputs that failed, one line each naming the file (and the list line that named it), reported at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: Path, origin: str, err: Exception) -> None:
        reason = str(err) if str(path) in str(err) else f"{path}: {err}"
        self.lines.append(f"{reason} (listed in {origin})" if origin else reason)
        logger.error(self.lines[-1])

    def report(self, total: int, what: str) -> int:
        """Print the failures on stderr; the exit code: 1 if any input failed, else 0."""
        if not self.lines:
            return 0
        print(f"{len(self.lines)} of {total} {what} failed:", file=sys.stderr)
        for reason in self.lines:
            print(f"  {reason}", file=sys.stderr)
        return 1


def _pixels(K: np.ndarray) -> str:
    return f"fx {K[0, 0]:.1f}, fy {K[1, 1]:.1f}, cx {K[0, 2]:.1f}, cy {K[1, 2]:.1f} px"


class CameraSource:
    """K of each input, from --intrinsics or --focal-length-x/-y, with the checks and the scaling rules.

    - No camera: None for every input.
    - Focal lengths: fx, fy (fy defaults to fx) in pixels of each input, the principal point at its centre
      ((W - 1) / 2, (H - 1) / 2), as the official depth_to_pointcloud.py.
    - A folder: <input stem>.npy (or .txt) per input, each K for its own input.
    - One K (a .npy, a .txt, or fx,fy,cx,cy): it describes inputs of the first input's size (`bind`). An input of
      another size with the same aspect ratio (within 1 %) gets K scaled to its size, with a warning that gives the
      scaled K; one of another aspect ratio (rotated, cropped) is refused: scaling cannot make K right for it.

    Every K is checked with `intrinsics_problem` against its input's size (units, normalisation, skew, principal
    point far from the centre), and refused with the likely cause; `check_inputs` does it for every input at once,
    before any work.

    Args:
        intrinsics: the --intrinsics value, or None.
        focal_x, focal_y: the --focal-length-x / -y values (pixels), or None.
        allow_offcentre: accept a principal point far from the image centre (--allow-offcentre-principal-point).
    """

    def __init__(
        self, intrinsics: str | None, focal_x: float | None, focal_y: float | None, allow_offcentre: bool = False
    ) -> None:
        self.spec, self.focal, self.allow_offcentre = intrinsics, None, allow_offcentre
        self.folder = self.K = self.reference = None
        self.warned: set[tuple[int, int]] = set()
        if focal_y is not None and focal_x is None:
            raise DataError("--focal-length-y needs --focal-length-x (fy defaults to fx, not the other way round)")
        if focal_x is not None:
            if intrinsics is not None:
                raise DataError("give either --intrinsics or --focal-length-x/--focal-length-y, not both")
            self.focal = (focal_x, focal_x if focal_y is None else focal_y)
            self.source = f"--focal-length-x {focal_x:g} --focal-length-y {self.focal[1]:g}"
            problem = validate_intrinsics(make_intrinsics(*self.focal, 0.0, 0.0))
            if problem:
                raise DataError(f"{self.source}: {problem}")
        elif intrinsics is not None:
            self._read_spec(Path(intrinsics))

    def _read_spec(self, path: Path) -> None:
        self.source = f"--intrinsics {self.spec}"
        if path.is_dir():
            self.folder = path
        elif path.is_file():
            self.K = read_intrinsics(path)
        else:
            try:
                self.K = make_intrinsics(*(float(v) for v in self.spec.split(",")))
            except (TypeError, ValueError):
                problem = "not a file, a folder, or four numbers fx,fy,cx,cy"
                raise DataError(f"--intrinsics {self.spec!r}: {problem}") from None
            problem = validate_intrinsics(self.K)
            if problem:
                raise DataError(f"--intrinsics {self.spec!r}: {problem}")

    @property
    def given(self) -> bool:
        return self.spec is not None or self.focal is not None

    def bind(self, first: Path, size: tuple[int, int] | None = None) -> None:
        """Fix the size a single K describes to that of the first input (read if `size` is None), and check K
        against it (DataError). Nothing to do for other sources, or if the input cannot be read."""
        if self.K is None or self.reference is not None:
            return
        size = size or frame_size(first)
        if size is None:
            return
        self.reference = (first, size)
        problem = intrinsics_problem(self.K, *size, self.allow_offcentre)
        if problem:
            raise DataError(f"{self.source}: {problem} (checked against {first}, {size[0]} x {size[1]} px)")

    def check_inputs(self, inputs: list[Path]) -> None:
        """Check K against the size of every input (image headers, video frame sizes) before any work.

        Raises:
            DataError: a single K that does not fit the first readable input; else one message naming every input
                that its K does not fit (another aspect ratio, a missing or implausible K file). Inputs that
                cannot be read are left to be reported as they are met.
        """
        if not self.given:
            return
        sized = [(path, size) for path in inputs if (size := frame_size(path)) is not None]
        if sized:
            self.bind(*sized[0])
        problems = []
        for path, (width, height) in sized:
            try:
                self(path, width, height)
            except DataError as err:
                problems.append(str(err))
        if problems:
            raise DataError(
                f"{len(problems)} of the {len(inputs)} inputs have no K that fits them (nothing was written):\n  "
                + "\n  ".join(problems)
            )

    def __call__(self, path: Path, width: int, height: int) -> np.ndarray | None:
        """(3, 3) float64 K in pixels of `path`, a width x height image (or video frame), or None without a camera."""
        if not self.given:
            return None
        origin = self.source
        if self.focal is not None:
            K = make_intrinsics(*self.focal, (width - 1) / 2, (height - 1) / 2)
        elif self.folder is not None:
            candidates = [self.folder / f"{path.stem}{suffix}" for suffix in (".npy", ".txt")]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise DataError(f"{path}: no intrinsics file {self.folder / path.stem}.npy for this image")
            K, origin = read_intrinsics(found), str(found)
        else:
            K = self._scaled(path, width, height)
        problem = intrinsics_problem(K, width, height, self.allow_offcentre)
        if problem:
            raise DataError(f"{path}: K from {origin} does not fit this {width} x {height} px input: {problem}")
        return K

    def _scaled(self, path: Path, width: int, height: int) -> np.ndarray:
        if self.reference is None:
            self.bind(path, (width, height))
        first, (w0, h0) = self.reference
        if (width, height) == (w0, h0):
            return self.K
        sx, sy = width / w0, height / h0
        if abs(sx / sy - 1) > 0.01:
            rotated = " (rotated by 90 degrees: EXIF orientation?)" if (width, height) == (h0, w0) else ""
            raise DataError(
                f"{path}: {width} x {height} px, but {self.source} is for {w0} x {h0} px images (the size of the "
                f"first input, {first}), of another aspect ratio{rotated}: scaling K cannot make it fit a rotated or "
                "cropped image; give one K per image with --intrinsics FOLDER"
            )
        K = scale_intrinsics(self.K, sx, sy)
        if (width, height) not in self.warned:
            self.warned.add((width, height))
            logger.warning(
                "%s: %d x %d px, but %s is for %d x %d px (the size of the first input, %s): K scaled by %.4g x %.4g "
                "to %s. If these inputs are not resized copies of one view, give one K per image (--intrinsics FOLDER)",
                path, width, height, self.source, w0, h0, first, sx, sy, _pixels(K),
            )  # fmt: skip
        return K
