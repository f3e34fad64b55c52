"""Two-layer feed-forward network with GELU (vits, vitb, vitl).

References: facebookresearch/dinov2 dinov2/layers/mlp.py.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from .linear import Linear


class Mlp(nn.Module):
    """fc1 -> activation -> fc2 on the last dimension."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.fc2 = Linear(hidden_features, out_features, bias=bias)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in_features) -> (..., out_features)."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
