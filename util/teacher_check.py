"""Judging a teacher before training: a teacher that teaches nothing (a collapsed run, a head with zero weights, a
random or a relative model) is refused with its figures, whatever its file name or config says.

On the first few validation images, the teacher's prediction must vary across each image and stay off its head's
limits (the thresholds of `util.monitor`), and its depth must rise where the ground truth's does: the Spearman rank
correlation of its prediction with the ground truth, per image, averaged over the images with at least
MIN_JUDGED_PIXELS valid pixels, must be at least MIN_TEACHER_CORRELATION. A rank correlation is blind to the
teacher's scale, as is the distillation loss. The bound is "clearly positive": random teachers land near 0 (either
sign) and a teacher that sees a scene's layout well above it; docs/RUNS.md gives measured values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from .monitor import collapse_description, prediction_spread

MIN_TEACHER_CORRELATION = 0.3
MIN_JUDGED_PIXELS = 20
JUDGED_IMAGES = 4


@dataclass
class TeacherJudgement:
    """A teacher's figures on `images` validation images.

    Attributes:
        images: validation images the teacher predicted.
        correlation: mean per-image rank correlation with the ground truth (None: no image had enough valid pixels).
        spread, saturated: mean `prediction_spread` of its predictions.
    """

    images: int
    correlation: float | None
    spread: float
    saturated: float

    def describe(self) -> str:
        rho = "not measured (too few valid pixels)" if self.correlation is None else f"{self.correlation:+.2f}"
        return (
            f"rank correlation with the ground truth {rho} (at least {MIN_TEACHER_CORRELATION:+.2f} needed), "
            f"log-depth spread {self.spread:.3f}, {self.saturated:.0%} of the pixels at the head's limit, "
            f"on {self.images} validation images"
        )


def _ranks(x: Tensor) -> Tensor:
    """Ranks of a 1-D tensor, ties sharing their average rank (float64)."""
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    return ((ends - counts + ends - 1) / 2)[inverse]


def rank_correlation(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation of two 1-D tensors (tied values share their average rank, so a constant
    tensor correlates with nothing: 0)."""
    ra, rb = (r - r.mean() for r in (_ranks(a), _ranks(b)))
    return float((ra * rb).sum() / ((ra.square().sum() * rb.square().sum()).sqrt() + 1e-12))


@torch.inference_mode()
def judge_teacher(
    teacher: nn.Module, dataset: Dataset, max_depth: float, device: torch.device, images: int = JUDGED_IMAGES
) -> TeacherJudgement:
    """The figures of `teacher` ((1, 3, H, W) image -> (1, H, W) depth, metres; head range `max_depth`) on the
    first `images` samples of a validation `dataset`."""
    correlations, spreads, saturations = [], [], []
    count = min(images, len(dataset))
    for index in range(count):
        sample = dataset[index]
        pred = teacher(sample["image"][None].to(device)).cpu()
        spread, saturated = prediction_spread(pred, sample["image_valid"][None], max_depth)
        spreads.append(spread)
        saturations.append(saturated)
        gt, valid = sample["depth"], sample["depth_valid"]
        pred = F.interpolate(pred[None], gt.shape, mode="bilinear", align_corners=True)[0, 0]
        if int(valid.sum()) >= MIN_JUDGED_PIXELS:
            correlations.append(rank_correlation(pred[valid], gt[valid]))
    mean = sum(correlations) / len(correlations) if correlations else None
    return TeacherJudgement(count, mean, sum(spreads) / max(count, 1), sum(saturations) / max(count, 1))


def teacher_problem(judgement: TeacherJudgement) -> str | None:
    """Why a teacher with this judgement would teach nothing (or inverted structure), or None."""
    collapsed = collapse_description(judgement.spread, judgement.saturated)
    if collapsed:
        return f"its prediction is collapsed: {collapsed}, so it teaches nothing"
    rho = judgement.correlation
    if rho is not None and rho < -0.2:
        return (
            "its output falls where the ground truth depth rises: it predicts disparity (a relative model), or it is "
            "untrained"
        )
    if rho is not None and rho < MIN_TEACHER_CORRELATION:
        return "its depth hardly follows the ground truth: an untrained, random or badly matched teacher"
    return None
