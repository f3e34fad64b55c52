"""The training epoch and the evaluation pass used by train.py (MAE's split, nanoGPT's step)."""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from dataset.protocol import EvalProtocol, eval_crop_mask
from depth_anything_v2.configs import IMAGENET_MEAN, IMAGENET_STD

from .checkpoint import TrainState
from .dist import DistInfo, all_reduce_sum
from .distill import student_loss
from .logger import AverageMeter, MetricsWriter
from .metric import MetricAccumulator
from .monitor import CollapseMonitor, prediction_spread
from .optim import get_lr, set_lr
from .precision import autocast_context
from .vis import evaluation_panel
from .zoom import zoom_slope

logger = logging.getLogger(__name__)


PANEL_IMAGES = 3  # validation images shown in TensorBoard at each evaluation


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps with a NaN or inf loss or gradient."""


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors of a batch on `device` (asynchronous copies from pinned memory on CUDA); other values as they are."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}


def panel_of(image: Tensor, pred: Tensor, gt: Tensor, valid: Tensor) -> np.ndarray:
    """`evaluation_panel` of one validation sample: (3, h, w) normalised network input, (H, W) prediction, truth
    and valid mask at the ground truth's size."""
    rgb = image.float().cpu() * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    rgb = F.interpolate(rgb[None], gt.shape, mode="bilinear", align_corners=False)[0]
    rgb = (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return evaluation_panel(rgb, pred.cpu().numpy(), gt.cpu().numpy(), valid.cpu().numpy())


def finite_on_every_rank(loss: Tensor, grad_norm: Tensor, info: DistInfo) -> bool:
    """Whether the loss and the gradient norm are finite on all processes (one all-reduce)."""
    finite = torch.tensor(float(bool(torch.isfinite(loss)) and bool(torch.isfinite(grad_norm))), device=loss.device)
    return all_reduce_sum(finite).item() == info.world_size


def record_skipped_step(state: TrainState, it: int, images: list[str], args: argparse.Namespace, writer) -> None:
    """Count a skipped step; NonFiniteLossError (naming the step's images) after too many in a row."""
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
            f"Images of the last batch: {images}. latest.pth holds the last good weights."
        )


def log_step(
    writer: MetricsWriter,
    state: TrainState,
    it: int,
    scalars: dict[str, float],
    terms: dict[str, float],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    last_iter: int,
) -> None:
    """One training log line and its TensorBoard / metrics.jsonl event; `terms` are the loss's parts, `last_iter`
    the iteration the run stops at."""
    scalars = {**scalars, **{f"train/{k}": v for k, v in terms.items()}, "train/skipped": state.skipped}
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups if not g["name"].endswith("_no_decay")}
    scalars.update({f"train/lr_{name}": lr for name, lr in lrs.items()})
    if scaler:
        scalars["train/loss_scale"] = scaler.get_scale()
    writer.write(it, scalars, epoch=state.epoch)
    logger.info(
        "epoch %d iter %d/%d loss %.4f (%s) lr %s spread %.3f %.1f samples/s",
        state.epoch,
        it,
        last_iter,
        scalars["train/loss"],
        " ".join(f"{k} {v:.3e}" for k, v in terms.items()),
        " ".join(f"{name} {lr:.2e}" for name, lr in lrs.items()),
        scalars["train/pred_spread"],
        scalars["train/samples_per_sec"],
    )


def micro_batches(loader: DataLoader, accum_iter: int) -> Iterator[list[dict]]:
    """The loader's batches in groups of `accum_iter`, one group per optimizer step; an incomplete last group is
    dropped (the schedule counts whole steps)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == accum_iter:
            yield group
            group = []


def forward_backward(
    model: nn.Module,
    teacher: nn.Module | None,
    batch: dict,
    args: argparse.Namespace,
    info: DistInfo,
    scaler: torch.amp.GradScaler | None,
    sync: bool,
    images_in_step: int,
) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor | None]:
    """Loss of one micro-batch and its backward. The loss sums per-image terms over `images_in_step` (the images
    of all the step's micro-batches), so the accumulated gradient is that of the whole step's batch, exactly up to
    rounding (`student_loss`). Without `sync`, DDP skips its gradient all-reduce (`no_sync`).

    Returns:
        (loss, loss terms, prediction, teacher depth or None), detached; the micro-batch's share of the step's loss.
    """
    with model.no_sync() if info.distributed and not sync else nullcontext():
        with autocast_context(info.device, args.precision):
            pred = model(batch["image"], batch["intrinsics"], batch["has_intrinsics"])
            # A cached teacher prediction comes with the batch, warped like the ground truth.
            teacher_depth = batch.get("teacher_depth")
            if teacher_depth is None and teacher is not None:
                teacher_depth = teacher(batch["image"])
        # Each sample's depth_valid already holds its own dataset's range (a mixture's datasets differ).
        loss, terms = student_loss(
            pred.float(), batch, teacher_depth=teacher_depth, distill_weight=args.distill_weight,
            images_in_step=images_in_step,
        )  # fmt: skip
        (scaler.scale(loss) if scaler else loss).backward()
    return loss.detach(), terms, pred.detach(), teacher_depth


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
    monitor: CollapseMonitor,
) -> None:
    """One pass over the loader from `state.epoch_step`; advances `state` by one per optimizer step, each of
    `args.accum_iter` micro-batches. `monitor` watches for a collapse.

    A step whose loss or gradient is not finite on any rank is skipped on every rank and counted; after
    `args.max_skipped_steps` in a row, NonFiniteLossError names the images of the last batch.
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    meter = AverageMeter()
    last_iter = min(state.total_iters, args.max_steps) if args.max_steps else state.total_iters
    start_time, start_it = time.time(), state.iteration
    for group in micro_batches(loader, args.accum_iter):
        it = state.iteration
        set_lr(optimizer, get_lr(it, state.total_iters, args.lr, args.warmup_iters))
        losses, parts = [], []
        images = sum(len(batch["image"]) for batch in group)
        for i, batch in enumerate(group):
            batch = to_device(batch, info.device)
            loss, terms, pred, teacher_depth = forward_backward(
                model, teacher, batch, args, info, scaler, i == len(group) - 1, images
            )
            losses.append(loss)
            parts.append(terms)
        loss = torch.stack(losses).sum()
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
            record_skipped_step(state, it, [p for b in group for p in b["image_path"]], args, writer)
            continue
        state.consecutive_skipped = 0
        meter.update(loss.item())
        if writer and it % args.log_interval == 0:
            elapsed = max(time.time() - start_time, 1e-9)
            spread, saturated = prediction_spread(pred, batch["image_valid"], args.max_depth)
            samples = (it + 1 - start_it) * len(group) * batch["image"].shape[0] * info.world_size
            scalars = {
                "train/loss": loss.item(),
                "train/grad_norm": grad_norm.item(),
                "train/pred_spread": spread,
                "train/pred_saturated": saturated,
                "train/samples_per_sec": samples / elapsed,
            }
            terms = {k: torch.stack([t[k] for t in parts]).sum().item() for k in parts[0]}
            drawn = loader.sampler.drawn(state.epoch_step)  # every rank's draws so far, per dataset of the mixture
            scalars.update({f"data/{label}/samples": float(n) for label, n in drawn.items()})
            log_step(writer, state, it, scalars, terms, optimizer, scaler, last_iter)
            taught = None
            if teacher_depth is not None:
                taught = prediction_spread(teacher_depth, batch["image_valid"], teacher.model.max_depth)
            warning = monitor.update(spread, saturated, args.lr, it, taught)
            if warning:
                logger.warning("%s", warning)
        if args.save_every and state.iteration % args.save_every == 0:
            save_fn()
        if args.max_steps and state.iteration >= args.max_steps:
            break
    logger.info("epoch %d done: mean loss %.4f over %d steps", state.epoch, meter.avg, meter.count)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    protocol: EvalProtocol,
    args: argparse.Namespace,
    info: DistInfo,
    panels: list[np.ndarray] | None = None,
) -> dict[str, float]:
    """Metrics over the whole validation set under `protocol`, identical for any number of processes.

    Each rank takes every world_size-th image (no padding, no duplicates); per-metric sums and counts are
    all-reduced. Predictions are resized (bilinear) to the ground truth's size. `zoom_slope` is averaged over
    images with intrinsics (d log depth / d log zoom; 0 is camera-aware, -1 reads scale from apparent size).
    With `panels`, the first PANEL_IMAGES images of this rank's shard are appended as `evaluation_panel`s.
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
        if panels is not None and len(panels) < PANEL_IMAGES:
            panels.append(panel_of(batch["image"][0], pred[0], gt[0], valid[0]))
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
