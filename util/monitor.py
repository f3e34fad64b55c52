"""Noticing a collapsed run: a prediction that no longer varies across the image, or a head stuck at its limit."""

from __future__ import annotations

import torch
from torch import Tensor


def prediction_spread(pred: Tensor, valid: Tensor, max_depth: float) -> tuple[float, float]:
    """(spread, saturated) of a batch of predictions.

    Args:
        pred: (B, H, W) predicted depth, metres.
        valid: (B, H, W) bool, pixels that show the scene (not padding).
        max_depth: the metric head's range, metres.

    Returns:
        spread: the standard deviation of log depth over each image's valid pixels, averaged over images (0 for a
            constant prediction; 0.1 means depth varies by about 10 % across the image).
        saturated: the fraction of valid pixels at the head's limits (above 0.999 max_depth or below 0.001
            max_depth), where its sigmoid no longer passes a gradient.
    """
    pred = pred.detach().float()
    log = torch.where(valid, pred.clamp_min(1e-6).log(), 0.0)
    n = valid.sum(dim=(1, 2)).clamp_min(1)
    mean = log.sum(dim=(1, 2)) / n
    var = (torch.where(valid, log - mean[:, None, None], 0.0) ** 2).sum(dim=(1, 2)) / n
    at_limit = valid & ((pred >= 0.999 * max_depth) | (pred <= 0.001 * max_depth))
    return var.sqrt().mean().item(), (at_limit.sum() / valid.sum().clamp_min(1)).item()


class CollapseMonitor:
    """Warns once when `patience` logged steps in a row show a collapsed prediction, and again only after a
    recovery.

    Args:
        patience: consecutive logged steps.
        min_spread: log-depth spread below which a prediction counts as constant.
        max_saturated: fraction of pixels at the head's limits above which the head counts as saturated.
    """

    def __init__(self, patience: int = 5, min_spread: float = 0.01, max_saturated: float = 0.9) -> None:
        self.patience, self.min_spread, self.max_saturated = patience, min_spread, max_saturated
        self.collapsed_steps = 0
        self.warned = False

    def update(self, spread: float, saturated: float, lr: float) -> str | None:
        """Record one logged step; returns the warning to log when the run has just been found collapsed."""
        collapsed = spread < self.min_spread or saturated > self.max_saturated
        self.collapsed_steps = self.collapsed_steps + 1 if collapsed else 0
        if not collapsed:
            self.warned = False
        if self.collapsed_steps < self.patience or self.warned:
            return None
        self.warned = True
        what = (
            f"{saturated:.0%} of the pixels sit at the head's limit (0 or --max-depth)"
            if saturated > self.max_saturated
            else f"depth varies by only {spread:.1%} across each image (log-depth spread {spread:.4f})"
        )
        return (
            f"the prediction looks collapsed for the last {self.collapsed_steps} logged steps: {what}. Likely fixes: "
            f"a warm-up (--warmup-iters 100 or more), gradient clipping (--clip-grad 1.0), a lower --lr (now {lr:g})"
        )
