"""What a dataset declares: its evaluation protocol (crop and depth range of its published numbers) and, for the
named datasets, its reader, usual range and folder scan."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

# (top, bottom, left, right) fractions of the image height / width. 'garg' (Garg et al.) and 'eigen' (Eigen et
# al.) are the KITTI crops; 'eigen_nyu' is the NYU-v2 Eigen crop, rows 45:471 and cols 41:601 of a 480x640
# image, scaled to the image size.
_CROPS = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
    "eigen_nyu": (45 / 480, 471 / 480, 41 / 640, 601 / 640),
}
EVAL_CROPS = ("none", *_CROPS)


def eval_crop_mask(height: int, width: int, crop: str) -> Tensor:
    """(H, W) bool mask of the standard evaluation crop.

    Args:
        height, width: ground-truth size in pixels.
        crop: 'none' (whole image); 'garg' (KITTI, rows 0.408-0.992, cols 0.036-0.964 of the image);
            'eigen' (KITTI, rows 0.332-0.914, cols 0.036-0.964); 'eigen_nyu' (NYU, rows 45:471, cols 41:601 for
            480x640, scaled). Box edges are int(fraction * size), as in the official code.

    Returns:
        (H, W) bool tensor on the CPU.
    """
    mask = torch.zeros(height, width, dtype=torch.bool)
    if crop == "none":
        return mask.fill_(True)
    if crop not in _CROPS:
        raise ValueError(f"unknown evaluation crop {crop!r}; choose one of {', '.join(EVAL_CROPS)}")
    top, bottom, left, right = _CROPS[crop]
    mask[int(top * height) : int(bottom * height), int(left * width) : int(right * width)] = True
    return mask


@dataclass(frozen=True)
class EvalProtocol:
    """How a dataset is evaluated: ground truth inside `crop` and [min_depth, max_depth] metres counts.

    Attributes:
        crop: one of EVAL_CROPS.
        min_depth, max_depth: evaluation depth range, metres.
    """

    crop: str = "none"
    min_depth: float = 1e-3
    max_depth: float = math.inf

    def __post_init__(self) -> None:
        if self.crop not in EVAL_CROPS:
            raise ValueError(f"unknown evaluation crop {self.crop!r}; choose one of {', '.join(EVAL_CROPS)}")


@dataclass(frozen=True)
class NamedDataset:
    """What a named dataset adapter declares (dataset/adapters/): how to read its depth, its usual range, its
    evaluation protocol, and how to walk its folder layout into file lists.

    Attributes:
        name: the `--dataset` name.
        read_depth: (path) -> (H, W) float32 depth in metres, 0 where invalid.
        max_depth: the dataset's customary metric range, metres.
        protocol: how its published numbers are evaluated.
        scan: (root, **options) -> {'splits': {split: lines}, 'intrinsics': {file: K}, 'skipped': [(path,
            reason)], optionally 'notes': [str]}, used by `python -m dataset.prepare`.
    """

    name: str
    read_depth: Callable[[Path], np.ndarray]
    max_depth: float
    protocol: EvalProtocol
    scan: Callable[..., dict]
