"""The training epoch and the evaluation pass used by train.py (MAE's split, nanoGPT's step)."""

from __future__ import annotations

import argparse
import logging
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from dataset.protocol import EvalProtocol, eval_crop_mask

from .checkpoint import TrainState
from .dist import DistInfo, all_reduce_sum
from .distill import student_loss
from .logger import AverageMeter, MetricsWriter
from .metric import MetricAccumulator
from .optim import get_lr, set_lr
from .precision import autocast_context
from .zoom import zoom_slope

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps with a NaN or inf loss or gradient."""


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors of a batch on `device` (asynchronous copies from pinned memory on CUDA); other values as they are."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}


def finite_on_every_rank(loss: Tensor, grad_norm: Tensor, info: DistInfo) -> bool:
    """Whether the loss and the gradient norm are finite on all processes (one all-reduce)."""
    finite = torch.tensor(float(bool(torch.isfinite(loss)) and bool(torch.isfinite(grad_norm))), device=loss.device)
    return all_reduce_sum(finite).item() == info.world_size


def record_skipped_step(state: TrainState, it: int, batch: dict, args: argparse.Namespace, writer) -> None:
    """Count a skipped step; NonFiniteLossError (naming the batch's images) after too many in a row."""
    state.skipped += 1
    state.consecutive_skipped += 1
    logger.warning(
        "non-finite loss or gradient at iteration %d: step skipped (%d in a row)", it, state.consecutive_skipped
    )
    if writer:
        writer.write(it, {"train/skipped": state.skipped}, epoch=state.epoch)
    if state.consecutive_skipped >= args.max_skipped_steps:
        raise NonFiniteLossError(
            f"{state.consecutive_skipped} consecutive steps had a NaN/inf loss or gradient; stopping. "
            f"Images of the last batch: {list(batch['image_path'])}. latest.pth holds the last good weights."
        )


def log_step(
    writer: MetricsWriter,
    state: TrainState,
    it: int,
    scalars: dict[str, float],
    terms: dict[str, float],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """One training log line and its TensorBoard / metrics.jsonl event; `terms` are the loss's parts."""
    scalars = {**scalars, **{f"train/{k}": v for k, v in terms.items()}, "train/skipped": state.skipped}
    scalars.update({f"train/lr_{g['name']}": g["lr"] for g in optimizer.param_groups})
    scalars["train/lr"] = optimizer.param_groups[0]["lr"]
    if scaler:
        scalars["train/loss_scale"] = scaler.get_scale()
    writer.write(it, scalars, epoch=state.epoch)
    logger.info(
        "epoch %d iter %d/%d loss %.4f (%s) lr %.2e %.1f samples/s",
        state.epoch,
        it,
        state.total_iters,
        scalars["train/loss"],
        " ".join(f"{k} {v:.4f}" for k, v in terms.items()),
        scalars["train/lr"],
        scalars["train/samples_per_sec"],
    )


def train_one_epoch(
    model: nn.Module,
    teacher: nn.Module | None,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    args: argparse.Namespace,
    state: TrainState,
    info: DistInfo,
    writer: MetricsWriter | None,
    save_fn: Callable[[], None],
) -> None:
    """One pass over the loader from `state.epoch_step`; advances `state`.

    A step whose loss or gradient is not finite on any rank is skipped on every rank and counted; after
    `args.max_skipped_steps` in a row, NonFiniteLossError names the images of the last batch.
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    meter = AverageMeter()
    start_time, start_it = time.time(), state.iteration
    for batch in loader:
        it = state.iteration
        set_lr(optimizer, get_lr(it, state.total_iters, args.lr, args.warmup_iters))
        batch = to_device(batch, info.device)
        x = batch["image"]
        with autocast_context(info.device, args.precision):
            pred = model(x, batch["intrinsics"], batch["has_intrinsics"])
            # A cached teacher prediction comes with the batch, warped like the ground truth.
            teacher_depth = batch.get("teacher_depth")
            if teacher_depth is None and teacher is not None:
                teacher_depth = teacher(x)
        loss, terms = student_loss(
            pred.float(), batch, args.min_depth, args.max_depth, teacher_depth, args.distill_weight
        )
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, args.clip_grad if args.clip_grad > 0 else math.inf)
        finite = finite_on_every_rank(loss, grad_norm, info)
        if scaler:
            # fp16 always steps the scaler: it skips a non-finite step itself and must see it to lower its scale.
            scaler.step(optimizer)
            scaler.update()
        elif finite:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.iteration += 1
        state.epoch_step += 1
        if not finite:
            record_skipped_step(state, it, batch, args, writer)
            continue
        state.consecutive_skipped = 0
        meter.update(loss.item())
        if writer and it % args.log_interval == 0:
            elapsed = max(time.time() - start_time, 1e-9)
            scalars = {
                "train/loss": loss.item(),
                "train/grad_norm": grad_norm.item(),
                "train/samples_per_sec": (it + 1 - start_it) * x.shape[0] * info.world_size / elapsed,
            }
            log_step(writer, state, it, scalars, {k: v.item() for k, v in terms.items()}, optimizer, scaler)
        if args.save_every and state.iteration % args.save_every == 0:
            save_fn()
        if args.max_steps and state.iteration >= args.max_steps:
            break
    logger.info("epoch %d done: mean loss %.4f over %d steps", state.epoch, meter.avg, meter.count)


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Dataset, protocol: EvalProtocol, args: argparse.Namespace, info: DistInfo
) -> dict[str, float]:
    """Metrics over the whole validation set under `protocol`, identical for any number of processes.

    Each rank takes every world_size-th image (no padding, no duplicates); per-metric sums and counts are
    all-reduced. Predictions are resized (bilinear) to the ground truth's size. `zoom_slope` is averaged over
    images with intrinsics (d log depth / d log zoom; 0 is camera-aware, -1 reads scale from apparent size).
    """
    model.eval()
    shard = Subset(dataset, list(range(info.rank, len(dataset), info.world_size)))
    loader = DataLoader(shard, batch_size=1, num_workers=args.workers, pin_memory=info.device.type == "cuda")
    metrics = MetricAccumulator()
    zoom = torch.zeros(2, dtype=torch.float64)

    def predict(image: Tensor, K: Tensor) -> Tensor:
        has_intrinsics = torch.ones(image.shape[0], dtype=torch.bool, device=image.device)
        with autocast_context(info.device, args.precision):
            return model(image, K, has_intrinsics).float()

    for batch in loader:
        batch = to_device(batch, info.device)
        with autocast_context(info.device, args.precision):
            net_pred = model(batch["image"], batch["intrinsics"], batch["has_intrinsics"]).float()
        gt = batch["depth"]
        pred = F.interpolate(net_pred[:, None], gt.shape[-2:], mode="bilinear", align_corners=True)[:, 0]
        valid = batch["depth_valid"] & (gt >= protocol.min_depth) & (gt <= protocol.max_depth)
        valid = valid & eval_crop_mask(gt.shape[-2], gt.shape[-1], protocol.crop).to(gt.device)
        metrics.update(pred, gt, valid)
        if args.zoom_factor > 1 and bool(batch["has_intrinsics"].all()):
            slopes = zoom_slope(
                predict, batch["image"], batch["intrinsics"], batch["image_valid"], args.zoom_factor, net_pred
            )
            slopes = slopes[torch.isfinite(slopes)]
            zoom += torch.tensor([slopes.sum().item(), slopes.numel()], dtype=torch.float64)
    metrics.all_reduce()
    results = metrics.compute()
    zoom = all_reduce_sum(zoom.to(info.device)).cpu()
    if zoom[1] > 0:
        results["zoom_slope"] = (zoom[0] / zoom[1]).item()
    return results
