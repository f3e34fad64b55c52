"""Stochastic depth: drop a whole residual branch per sample during training."""

from __future__ import annotations

from torch import Tensor, nn


class DropPath(nn.Module):
    """Zero the input for a random subset of samples (probability `drop_prob`) and rescale the rest."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep
