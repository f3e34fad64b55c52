"""KITTI (Geiger et al., 2012): raw drives with the depth benchmark's annotated ground truth; the Eigen split.

Layout under the root: raw `YYYY_MM_DD/YYYY_MM_DD_drive_NNNN_sync/image_02/data/NNNNNNNNNN.png` with
`YYYY_MM_DD/calib_cam_to_cam.txt`, and the depth benchmark's
`data_depth_annotated/{train,val}/<drive>/proj_depth/groundtruth/image_02/NNNNNNNNNN.png` (16-bit, metres x 256,
0 = no LiDAR point). K of the left colour camera is P_rect_02 of the drive's date.

    python -m dataset.prepare kitti --root DIR [--out dataset/splits/kitti] [--eigen-test eigen_test_files.txt] \
        [--depth-dir data_depth_annotated]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from depth_anything_v2.geometry import make_intrinsics

from ..filelist import format_line
from ..io import DataError, read_depth
from ..protocol import EvalProtocol, NamedDataset

NAME = "kitti"
MAX_DEPTH = 80.0
EVAL_PROTOCOL = EvalProtocol(crop="garg", min_depth=1e-3, max_depth=80.0)
CAMERA = "image_02"


def read_kitti_depth(path: str | Path) -> np.ndarray:
    """(H, W) float32 depth in metres from a KITTI 16-bit png (value / 256; 0 = invalid)."""
    return read_depth(path, 1 / 256)


def read_kitti_calib(path: str | Path, camera: str = "02") -> np.ndarray:
    """(3, 3) K in pixels of the rectified image of `camera` from `calib_cam_to_cam.txt` (P_rect_<camera>:
    12 numbers, row-major 3x4, fx = P[0], cx = P[2], fy = P[5], cy = P[6])."""
    key = f"P_rect_{camera}:"
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise DataError(f"{path}: cannot read calibration ({err.strerror})") from None
    for line in lines:
        if line.startswith(key):
            try:
                P = np.array(line[len(key) :].split(), dtype=np.float64)
            except ValueError:
                raise DataError(f"{path}: {key} holds something that is not a number") from None
            if P.size != 12:
                raise DataError(f"{path}: {key} has {P.size} numbers, expected 12 (a 3x4 projection matrix)")
            return make_intrinsics(P[0], P[5], P[2], P[6])
    raise DataError(f"{path}: no '{key}' line; is this a KITTI calib_cam_to_cam.txt?")


def read_eigen_list(path: str | Path) -> list[tuple[str, str, str]]:
    """(drive, camera, frame) of each line of an Eigen split list whose first field is a raw image path such as
    `2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png` (other fields ignored)."""
    frames = []
    for number, text in enumerate(Path(path).read_text().splitlines(), start=1):
        if not text.strip():
            continue
        parts = text.split()[0].split("/")
        if len(parts) != 5 or parts[3] != "data" or not parts[2].startswith("image_0") or parts[0] != parts[1][:10]:
            raise DataError(
                f"{path}:{number}: expected a raw image path 'DATE/DATE_drive_NNNN_sync/image_0X/data/N.png' "
                f"as the first field, found {text.split()[0]!r}"
            )
        frames.append((parts[1], parts[2], Path(parts[4]).stem))
    return frames


def scan(root: Path, depth_dir: str | Path = "data_depth_annotated", eigen_test: Path | None = None) -> dict:
    """Pair the annotated depth maps with raw images and per-date K.

    Without `eigen_test`: train / val = the depth benchmark's train / val folders (image_02). With it: val and
    test = the Eigen test frames that have annotated depth (the KITTI benchmark everyone reports), and train =
    both annotated folders minus every drive of the Eigen test.

    Returns:
        {'splits': {split: ['image depth intrinsics' lines, relative to root when inside it]}, 'intrinsics':
        {file name: (3, 3) K}, 'skipped': [(path, reason)]}.
    """
    annotated = root / depth_dir
    if not (annotated / "train").is_dir() and not (annotated / "val").is_dir():
        raise DataError(
            f"{annotated}: no train/ or val/ folder of KITTI annotated depth (unpack data_depth_annotated.zip "
            "there, or pass --depth-dir)"
        )
    eigen = read_eigen_list(eigen_test) if eigen_test else []
    eigen_drives = {drive for drive, _, _ in eigen}
    intrinsics, skipped, calibs = {}, [], {}

    def line(drive: str, camera: str, frame: str, depth: Path) -> str | None:
        date = drive[:10]
        image = root / date / drive / camera / "data" / f"{frame}.png"
        if not image.is_file():
            skipped.append((_rel(depth, root), f"no raw image {_rel(image, root)}"))
            return None
        if (date, camera) not in calibs:
            try:
                k_name = f"kitti_{date}_{camera}.txt"
                intrinsics[k_name] = read_kitti_calib(root / date / "calib_cam_to_cam.txt", camera[-2:])
                calibs[date, camera] = k_name
            except DataError as err:
                calibs[date, camera] = None
                skipped.append((date, str(err)))
        if calibs[date, camera] is None:
            skipped.append((_rel(image, root), f"no usable calibration for {date}"))
            return None
        return format_line([_rel(image, root), _rel(depth, root), f"intrinsics/{calibs[date, camera]}"])

    splits: dict[str, list[str]] = {"train": [], "val": []}
    for folder in ("train", "val"):
        for depth in sorted((annotated / folder).glob(f"*_sync/proj_depth/groundtruth/{CAMERA}/*.png")):
            drive = depth.parts[-5]
            if drive in eigen_drives:
                skipped.append((_rel(depth, root), "drive of the Eigen test split"))
                continue
            split = "train" if eigen or folder == "train" else "val"
            splits[split].append(line(drive, CAMERA, depth.stem, depth))
    if eigen:
        for drive, camera, frame in eigen:
            candidates = [
                annotated / f / drive / "proj_depth/groundtruth" / camera / f"{frame}.png" for f in ("train", "val")
            ]
            depth = next((c for c in candidates if c.is_file()), None)
            if depth is None:
                skipped.append((f"{drive}/{camera}/{frame}", "Eigen test frame without annotated depth"))
                continue
            splits["val"].append(line(drive, camera, frame, depth))
        splits["test"] = splits["val"]
    splits = {name: [text for text in lines if text] for name, lines in splits.items()}
    return {"splits": splits, "intrinsics": intrinsics, "skipped": skipped}


def _rel(path: Path, root: Path) -> str:
    """`path` relative to `root` when inside it, else absolute (list paths resolve against --data-root)."""
    relative = os.path.relpath(path.resolve(), root.resolve())
    return str(path.resolve()) if relative.split(os.sep)[0] == ".." else relative


DATASET = NamedDataset(NAME, read_kitti_depth, MAX_DEPTH, EVAL_PROTOCOL, scan)
