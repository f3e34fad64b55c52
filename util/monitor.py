"""Noticing a collapsed run: a prediction that no longer varies across the image, or a head stuck at its limit."""

from __future__ import annotations

import torch
from torch import Tensor

MIN_SPREAD = 0.01  # log-depth spread below which a prediction counts as flat (depth varies by under 1 %)
MAX_SATURATED = 0.9  # fraction of pixels at the head's limits above which a head counts as saturated
RANDOM_START = "random weights"  # `CollapseMonitor` start of a run without --pretrained-from


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


def collapse_description(spread: float, saturated: float) -> str | None:
    """What is wrong with a prediction of this `prediction_spread`, or None when it varies and is not saturated."""
    if saturated > MAX_SATURATED:
        return f"{saturated:.0%} of the pixels sit at the head's limit (0 or its max depth)"
    if spread < MIN_SPREAD:
        return f"depth varies by only {spread:.1%} across each image (log-depth spread {spread:.4f})"
    return None


def start_of(pretrained_from: str | None) -> str:
    """A run's starting weights as `CollapseMonitor` names them: its --pretrained-from, else RANDOM_START."""
    return f"--pretrained-from {pretrained_from}" if pretrained_from else RANDOM_START


class CollapseMonitor:
    """Warns once when `patience` logged steps in a row show a collapsed prediction, and again only after a
    recovery. The warning names a checkpoint the run started from when it was already collapsed at iteration 0
    (random weights always start flat), the teacher when its targets are collapsed too, and of warm-up, clipping
    and a lower lr the fixes the run does not use yet.

    Args:
        patience: consecutive logged steps.
        start: the weights the run started from, for the warning (e.g. '--pretrained-from x.pth'), or
            RANDOM_START.
        teacher: the teacher checkpoint, or None without distillation.
        warmup_iters, clip_grad: the run's warm-up steps and gradient clipping (0: none).
    """

    def __init__(
        self,
        patience: int = 5,
        start: str = RANDOM_START,
        teacher: str | None = None,
        warmup_iters: int = 0,
        clip_grad: float = 0.0,
    ) -> None:
        self.patience, self.start, self.teacher = patience, start, teacher
        self.warmup_iters, self.clip_grad = warmup_iters, clip_grad
        self.collapsed_steps = 0
        self.warned = False
        self.start_problem: str | None = None
        self.teacher_problem: str | None = None

    def update(
        self,
        spread: float,
        saturated: float,
        lr: float,
        iteration: int | None = None,
        teacher: tuple[float, float] | None = None,
    ) -> str | None:
        """Record one logged step: the student's `prediction_spread`, the base lr, the iteration (0: the starting
        weights' prediction) and the teacher targets' `prediction_spread`; returns the warning to log when the
        run has just been found collapsed."""
        problem = collapse_description(spread, saturated)
        if iteration == 0:
            self.start_problem = problem
        if teacher is not None:
            self.teacher_problem = collapse_description(*teacher)
        self.collapsed_steps = self.collapsed_steps + 1 if problem else 0
        if not problem:
            self.warned = False
        if self.collapsed_steps < self.patience or self.warned:
            return None
        self.warned = True
        causes = []
        if self.start_problem and self.start != RANDOM_START:
            causes.append(
                f"the starting weights ({self.start}) were already collapsed at iteration 0 ({self.start_problem}): "
                "start from a checkpoint that predicts depth"
            )
        if self.teacher_problem:
            causes.append(
                f"the teacher {self.teacher} gives collapsed targets ({self.teacher_problem}): they teach nothing; "
                "use another --teacher-checkpoint"
            )
        fixes = [] if self.warmup_iters else ["a warm-up (--warmup-iters 100 or more)"]
        fixes += [] if self.clip_grad else ["gradient clipping (--clip-grad 1.0)"]
        causes.append(", ".join([*fixes, f"a lower --lr (now {lr:g})"]))
        return (
            f"the prediction looks collapsed for the last {self.collapsed_steps} logged steps: {problem}. Likely "
            f"fixes: {'; '.join(causes)}"
        )
