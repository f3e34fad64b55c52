"""What the adapters' folder scans share: one camera per folder of images, its K from the first image's size."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np


def folder_intrinsics(
    images: list[Path],
    root: Path,
    prefix: str,
    k_for_size: Callable[[int, int], np.ndarray],
    intrinsics: dict[str, np.ndarray],
    skipped: list[tuple[str, str]],
) -> str | None:
    """The K file name (`<prefix>_<W>x<H>.txt`) of a folder of images taken by one camera.

    K is `k_for_size(width, height)` of the folder's first image, added to `intrinsics`. None for a folder without
    images, and when the first image is unreadable (then every image of the folder goes to `skipped` as (path
    relative to root, reason)).
    """
    if not images:
        return None
    first = cv2.imread(str(images[0]), cv2.IMREAD_UNCHANGED)
    if first is None:
        skipped.extend((str(p.relative_to(root)), f"{images[0].parent.name}: first image unreadable") for p in images)
        return None
    H, W = first.shape[:2]
    name = f"{prefix}_{W}x{H}.txt"
    intrinsics[name] = k_for_size(W, H)
    return name
