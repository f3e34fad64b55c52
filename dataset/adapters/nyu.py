"""NYU Depth v2 (Silberman et al., 2012): indoor Kinect frames, evaluated on the Eigen test split (654 images).

Layout (the widely used "sync" release of the BTS authors): training frames `sync/<scene>/rgb_NNNNN.jpg` with
`sync/<scene>/sync_depth_NNNNN.png`, and the official test split `official_splits/test/<scene>/rgb_NNNNN.jpg`
with `sync_depth_NNNNN.png`; depth is 16-bit millimetres, 0 = no measurement.

    python -m dataset.prepare nyu --root DIR [--out dataset/splits/nyu]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depth_anything_v2.geometry import make_intrinsics, scale_intrinsics

from ..filelist import format_line
from ..io import DataError, read_depth
from ..protocol import EvalProtocol, NamedDataset
from .folders import folder_intrinsics

NAME = "nyu"
MAX_DEPTH = 10.0
EVAL_PROTOCOL = EvalProtocol(crop="eigen_nyu", min_depth=1e-3, max_depth=10.0)
# The Kinect colour camera of the NYU toolbox (camera_params.m) at 640 x 480, used by every NYU evaluation;
# taken as OpenCV pixel-centre coordinates.
NATIVE_SIZE = (640, 480)
NATIVE_K = make_intrinsics(518.8579, 519.4696, 325.5824, 253.7362)
FOLDERS = {"train": Path("sync"), "test": Path("official_splits/test")}


def intrinsics_for_size(width: int, height: int) -> np.ndarray:
    """(3, 3) K of the NYU camera for an image of width x height pixels (the 640 x 480 camera resized)."""
    return scale_intrinsics(NATIVE_K, width / NATIVE_SIZE[0], height / NATIVE_SIZE[1])


def read_nyu_depth(path: str | Path) -> np.ndarray:
    """(H, W) float32 depth in metres from a 16-bit millimetre png (0 = invalid)."""
    return read_depth(path, 1 / 1000)


def scan(root: Path) -> dict:
    """Pair the rgb / sync_depth frames of `sync/` (train) and `official_splits/test/` (val = test).

    K is the NYU camera scaled to each scene folder's image size (read once per folder).

    Returns:
        {'splits': {'train' | 'val' | 'test': ['image depth intrinsics' lines relative to root]}, 'intrinsics':
        {file name: (3, 3) K}, 'skipped': [(path, reason)]}.
    """
    splits: dict[str, list[str]] = {"train": [], "test": []}
    intrinsics, skipped = {}, []
    for split, folder in FOLDERS.items():
        for scene in sorted(p for p in (root / folder).glob("*") if p.is_dir()):
            images = sorted(scene.glob("rgb_*.jpg"))
            k_name = folder_intrinsics(images, root, "nyu", intrinsics_for_size, intrinsics, skipped)
            if k_name is None:
                continue
            for image in images:
                depth = scene / f"sync_depth_{image.stem[len('rgb_') :]}.png"
                if not depth.is_file():
                    skipped.append((str(image.relative_to(root)), "no sync_depth png"))
                    continue
                splits[split].append(
                    format_line([str(image.relative_to(root)), str(depth.relative_to(root)), f"intrinsics/{k_name}"])
                )
    if not splits["train"] and not splits["test"]:
        raise DataError(
            f"{root}: no NYU frames (expected sync/<scene>/rgb_NNNNN.jpg + sync_depth_NNNNN.png and/or "
            "official_splits/test/<scene>/...)"
        )
    splits = {"train": splits["train"], "val": splits["test"], "test": splits["test"]}
    return {"splits": splits, "intrinsics": intrinsics, "skipped": skipped}


DATASET = NamedDataset(NAME, read_nyu_depth, MAX_DEPTH, EVAL_PROTOCOL, scan)
