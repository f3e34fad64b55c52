"""DPT decoder pieces with the upstream names (`resConfUnit1`, `layerN_rn`, ...) so checkpoints load strictly.

References: isl-org/DPT and Depth Anything V2 `depth_anything_v2/util/blocks.py`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _make_scratch(in_shape: list[int], out_shape: int) -> nn.Module:
    """A container with `layer{1..4}_rn`: 3x3 convolutions (no bias) from each level's width to `out_shape`."""
    scratch = nn.Module()
    for i, channels in enumerate(in_shape, start=1):
        setattr(scratch, f"layer{i}_rn", nn.Conv2d(channels, out_shape, kernel_size=3, padding=1, bias=False))
    return scratch


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x)))), optionally with BatchNorm after each conv."""

    def __init__(self, features: int, use_bn: bool = False) -> None:
        super().__init__()
        self.bn = use_bn
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=True)
        if use_bn:
            self.bn1 = nn.BatchNorm2d(features)
            self.bn2 = nn.BatchNorm2d(features)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(x))
        if self.bn:
            out = self.bn1(out)
        out = self.conv2(F.relu(out))
        if self.bn:
            out = self.bn2(out)
        return out + x


class FeatureFusionBlock(nn.Module):
    """Fuse a coarser path with a skip feature, refine, project 1x1, upsample (bilinear, align_corners=True)."""

    def __init__(self, features: int, use_bn: bool = False) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        # resConfUnit1 exists (and is in every checkpoint) but refinenet4 is called with one input only.
        self.resConfUnit1 = ResidualConvUnit(features, use_bn)
        self.resConfUnit2 = ResidualConvUnit(features, use_bn)

    def forward(self, path: Tensor, skip: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        """path, skip: (B, F, h, w) -> (B, F, *size), or twice the size when `size` is None."""
        if skip is not None:
            path = path + self.resConfUnit1(skip)
        # The 1x1 projection commutes with bilinear upsampling (a per-channel blend whose weights sum to 1), so it
        # runs before it, on a quarter of the pixels; the official order upsamples first (same result to rounding).
        path = self.out_conv(self.resConfUnit2(path))
        if size is None:
            return F.interpolate(path, scale_factor=2, mode="bilinear", align_corners=True)
        return F.interpolate(path, size=size, mode="bilinear", align_corners=True)
