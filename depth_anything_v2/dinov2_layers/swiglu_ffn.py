"""SwiGLU feed-forward network in pure PyTorch (the vitg backbone).

References: facebookresearch/dinov2 dinov2/layers/swiglu_ffn.py (`SwiGLUFFNFused` without xFormers).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .linear import Linear


class SwiGLUFFNFused(nn.Module):
    """w12 (fused gate and value) -> SiLU(gate) * value -> w3.

    The hidden width is 2/3 of the requested one rounded up to a multiple of 8 (DINOv2's rule), which gives
    4096 for vitg (1536 x 4).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        bias: bool = True,
        **_: object,
    ) -> None:
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        hidden_features = (int(hidden_features * 2 / 3) + 7) // 8 * 8
        self.w12 = Linear(in_features, 2 * hidden_features, bias=bias)
        self.w3 = Linear(hidden_features, out_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in_features) -> (..., out_features)."""
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)
