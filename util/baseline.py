"""The constant baseline: every pixel at the median depth of the training data.

A model that does not beat it has learnt nothing about the images; the quick start and the experiments report it
beside their models (the same evaluation code runs it: it is a module with the model's call signature).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from dataset import GenericDatasetWithIntrinsics


class ConstantDepth(nn.Module):
    """Predicts `depth_m` metres at every pixel, whatever the image and the camera.

    Args:
        depth_m: the constant depth, metres (e.g. `median_depth` of the training data).
    """

    def __init__(self, depth_m: float) -> None:
        super().__init__()
        self.depth_m = float(depth_m)

    def forward(self, image: Tensor, intrinsics: Tensor | None = None, has_intrinsics: Tensor | None = None) -> Tensor:
        """(B, 3, H, W) image -> (B, H, W) depth, metres."""
        return torch.full((image.shape[0], *image.shape[-2:]), self.depth_m, device=image.device)


def median_depth(dataset: GenericDatasetWithIntrinsics) -> float:
    """Median of every measured ground-truth depth (> 0, finite) of the dataset's maps, metres, read with its depth
    scale or reader."""
    values = []
    for index in range(len(dataset)):
        depth = dataset.read_depth(index)
        values.append(depth[np.isfinite(depth) & (depth > 0)])
    return float(np.median(np.concatenate(values)))
