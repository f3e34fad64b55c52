"""NYU Depth v2 (Silberman et al., 2012): indoor Kinect frames, evaluated on the Eigen test split (654 images).

Layout (the widely used "sync" release of the BTS authors): training frames `sync/<scene>/rgb_NNNNN.jpg` with
`sync/<scene>/sync_depth_NNNNN.png`, and the official test split `official_splits/test/<scene>/rgb_NNNNN.jpg`
with `sync_depth_NNNNN.png`; depth is 16-bit millimetres, 0 = no measurement.

    python -m dataset.prepare nyu --root DIR [--out dataset/splits/nyu]
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from util.geometry import make_intrinsics, scale_intrinsics

from .base import GenericDatasetWithIntrinsics
from .io import DataError, read_depth

NAME = "nyu"
MAX_DEPTH = 10.0
EVAL_DEFAULTS = {"eval_crop": "eigen_nyu", "eval_min_depth": 1e-3, "eval_max_depth": 10.0}
# The Kinect colour camera of the NYU toolbox (camera_params.m) at 640 x 480, used by every NYU evaluation;
# taken as OpenCV pixel-centre coordinates.
NATIVE_SIZE = (640, 480)
NATIVE_K = make_intrinsics(518.8579, 519.4696, 325.5824, 253.7362)
FOLDERS = {"train": Path("sync"), "test": Path("official_splits/test")}


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
            if not images:
                continue
            first = cv2.imread(str(images[0]), cv2.IMREAD_UNCHANGED)
            if first is None:
                skipped.extend((str(p.relative_to(root)), "scene folder's first image unreadable") for p in images)
                continue
            H, W = first.shape[:2]
            k_name = f"nyu_{W}x{H}.txt"
            intrinsics[k_name] = scale_intrinsics(NATIVE_K, W / NATIVE_SIZE[0], H / NATIVE_SIZE[1])
            for image in images:
                depth = scene / f"sync_depth_{image.stem[len('rgb_') :]}.png"
                if not depth.is_file():
                    skipped.append((str(image.relative_to(root)), "no sync_depth png"))
                    continue
                splits[split].append(f"{image.relative_to(root)} {depth.relative_to(root)} intrinsics/{k_name}")
    if not splits["train"] and not splits["test"]:
        raise DataError(
            f"{root}: no NYU frames (expected sync/<scene>/rgb_NNNNN.jpg + sync_depth_NNNNN.png and/or "
            "official_splits/test/<scene>/...)"
        )
    splits = {"train": splits["train"], "val": splits["test"], "test": splits["test"]}
    return {"splits": splits, "intrinsics": intrinsics, "skipped": skipped}


def build(
    split: str, size: tuple[int, int], mode: str, root: str | None = None, **kwargs
) -> GenericDatasetWithIntrinsics:
    """NYU Depth v2 `split` from the lists `python -m dataset.prepare nyu` wrote (see `prepare.named_dataset`)."""
    # Imported here because dataset.prepare is also the CLI (python -m), which package import must not load.
    from .prepare import named_dataset

    return named_dataset(NAME, split, size, mode, root, read_nyu_depth, MAX_DEPTH, EVAL_DEFAULTS, **kwargs)
