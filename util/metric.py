"""Depth metrics with the official DA-V2 definitions, accumulated as per-image sums and an image count.

The official `eval_depth` computes every metric per image over its valid pixels and the training script
averages over images. Keeping sums and counts (float64) instead of means lets evaluation all-reduce them across
processes and get exactly the numbers of a single process, however the images are sharded.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from dataset.io import DataError

METRIC_NAMES = ("d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")
LOWER_IS_BETTER = frozenset(("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"))
_SUM_KEYS = (*METRIC_NAMES, "count")
# Images with fewer valid ground-truth pixels are not counted, as in the official Depth Anything V2 evaluation.
MIN_VALID_PIXELS = 10

# Non-positive predictions would make the log metrics -inf; they are floored here (metres) so one bad pixel
# gives a large finite error instead of a NaN for the whole evaluation. NaN predictions stay NaN.
_MIN_PRED = 1e-6


def depth_metric_sums(pred: Tensor, target: Tensor, valid: Tensor) -> dict[str, Tensor]:
    """Per-image metrics over valid pixels, summed over the images with at least MIN_VALID_PIXELS valid pixels
    (as the official evaluation, which skips the others).

    With p, g the predicted and true depth and d = ln p - ln g: d1, d2, d3 = fraction of max(p/g, g/p) below
    1.25, 1.25^2, 1.25^3; abs_rel = mean(|p - g| / g); sq_rel = mean((p - g)^2 / g); rmse = sqrt(mean((p - g)^2));
    rmse_log = sqrt(mean(d^2)); log10 = mean(|log10 p - log10 g|); silog = sqrt(mean(d^2) - 0.5 mean(d)^2).

    Args:
        pred: (B, H, W) predicted depth, metres, already at the target's resolution.
        target: (B, H, W) ground-truth depth, metres; non-positive or non-finite values are not valid.
        valid: (B, H, W) bool mask (ground-truth validity, depth range and evaluation crop applied).

    Returns:
        {name: float64 scalar sum over images for name in METRIC_NAMES, 'count': number of images summed}.
    """
    pred, target = pred.detach().double(), target.detach().double()
    valid = valid & torch.isfinite(target) & (target > 0)
    p = torch.where(valid, pred, 1.0).clamp_min(_MIN_PRED)
    g = torch.where(valid, target, 1.0)
    n = valid.sum(dim=(1, 2))
    has = n >= MIN_VALID_PIXELS

    def mean(x: Tensor) -> Tensor:
        return torch.where(valid, x, 0.0).sum(dim=(1, 2)) / n.clamp_min(1)

    ratio = torch.maximum(p / g, g / p)
    diff_log = p.log() - g.log()
    per_image = {
        "d1": mean((ratio < 1.25).double()),
        "d2": mean((ratio < 1.25**2).double()),
        "d3": mean((ratio < 1.25**3).double()),
        "abs_rel": mean((p - g).abs() / g),
        "sq_rel": mean((p - g) ** 2 / g),
        "rmse": mean((p - g) ** 2).sqrt(),
        "rmse_log": mean(diff_log**2).sqrt(),
        "log10": mean((p.log10() - g.log10()).abs()),
        "silog": (mean(diff_log**2) - 0.5 * mean(diff_log) ** 2).sqrt(),
    }
    sums = {name: torch.where(has, value, 0.0).sum() for name, value in per_image.items()}
    sums["count"] = has.sum().double()
    return sums


class MetricAccumulator:
    """Running float64 sums of per-image metrics over an evaluation, mergeable across processes.

    `sums` holds one scalar per name in METRIC_NAMES plus 'count' (images seen with a valid pixel), on the
    device of the last update (CPU before any).
    """

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {key: torch.zeros((), dtype=torch.float64) for key in _SUM_KEYS}

    def update(self, pred: Tensor, target: Tensor, valid: Tensor) -> None:
        """Add a batch: pred, target (B, H, W) metres, valid (B, H, W) bool (see `depth_metric_sums`)."""
        for key, value in depth_metric_sums(pred, target, valid).items():
            self.sums[key] = self.sums[key].to(value.device) + value

    def all_reduce(self) -> None:
        """Sum the sums over all processes (torch.distributed SUM); a no-op without a process group.

        Every rank must call it, including ranks that saw no image. NCCL only reduces CUDA tensors, so the sums
        travel through the current CUDA device there, whatever device they are on.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        home = self.sums["count"].device
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else home
        packed = torch.stack([self.sums[key].to(device) for key in _SUM_KEYS])
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        self.sums = dict(zip(_SUM_KEYS, packed.to(home).unbind()))

    def compute(self) -> dict[str, float]:
        """Means over images, {name: value} in METRIC_NAMES order.

        Raises:
            DataError: no image was counted (no valid ground truth anywhere): the metrics would be undefined.
        """
        count = float(self.sums["count"])
        if count == 0:
            raise DataError(
                f"evaluation: no image has {MIN_VALID_PIXELS} or more valid ground-truth pixels inside the evaluation "
                "range and crop, so the metrics are undefined: check --depth-scale (the depth units), --max-depth and "
                "--min-depth, and --eval-min-depth / --eval-max-depth / --eval-crop"
            )
        return {name: float(self.sums[name]) / count for name in METRIC_NAMES}
