"""The training epoch, the evaluation pass and the learning-rate schedule used by train.py (MAE's split)."""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from depth_anything_v2.distill import student_loss
from util.dist import DistInfo, all_reduce_sum
from util.logger import AverageMeter, MetricsWriter
from util.metric import MetricAccumulator, eval_crop_mask
from util.zoom import zoom_slope

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps with a NaN or inf loss or gradient."""


def get_lr(it: int, total_iters: int, base_lr: float, warmup_iters: int = 0) -> float:
    """Linear warm-up, then poly decay base_lr * (1 - it / total)^0.9, applied from iteration 0."""
    if it < warmup_iters:
        return base_lr * (it + 1) / warmup_iters
    return base_lr * max(1.0 - it / total_iters, 0.0) ** 0.9


def autocast_context(device: torch.device, precision: str):
    """bf16/fp16 autocast, or a no-op for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Augmentation seed of one sample in one epoch: independent of workers, ranks and interruptions."""
    return (seed * 1_000_003 + epoch * 7_919 + index * 104_729) % 2**31


class ResumableSampler(DistributedSampler):
    """DistributedSampler (set_epoch shuffling, one shard per rank) that yields (index, augmentation seed)
    pairs and can start mid-epoch, so a resumed run sees exactly the samples and augmentations it would
    have seen."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first `start` samples of this rank's shard in the current epoch."""
        self.start = start

    def __iter__(self):
        indices = list(super().__iter__())[self.start :]
        return iter([(i, sample_seed(self.seed, self.epoch, i)) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start


def to_device(batch: dict, device: torch.device) -> dict:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}


def train_one_epoch(
    model: nn.Module,
    teacher: nn.Module | None,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    args,
    state: dict,
    info: DistInfo,
    writer: MetricsWriter | None,
    save_fn: Callable[[], None],
) -> None:
    """One pass over the loader from `state['epoch_step']`; updates `state` (iteration, epoch_step, skipped).

    A step whose loss or gradient is not finite on any rank is skipped on every rank and counted; after
    `args.max_skipped_steps` in a row, NonFiniteLossError names the images of the last batch.
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    meters = {"loss": AverageMeter()}
    start_time, start_it = time.time(), state["iteration"]
    for batch in loader:
        it = state["iteration"]
        for group in optimizer.param_groups:
            group["lr"] = get_lr(it, state["total_iters"], args.lr, args.warmup_iters) * group["lr_scale"]
        batch = to_device(batch, info.device)
        x = batch["image"]
        with autocast_context(info.device, args.precision):
            if args.use_camera_intrinsics:
                pred = model(x, batch["intrinsics"], batch["has_intrinsics"])
            else:
                pred = model(x)
            teacher_depth = None
            if "teacher_depth" in batch:  # cached teacher prediction, warped like the ground truth
                teacher_depth = batch["teacher_depth"]
            elif teacher is not None:
                teacher_depth = teacher(x)
        loss, terms = student_loss(
            pred.float(), batch, args.min_depth, args.max_depth, teacher_depth, args.distill_weight
        )
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, args.clip_grad if args.clip_grad > 0 else math.inf)
        finite = torch.tensor(float(bool(torch.isfinite(loss)) and bool(torch.isfinite(grad_norm))), device=x.device)
        finite = all_reduce_sum(finite).item() == info.world_size
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        elif finite:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["iteration"] += 1
        state["epoch_step"] += 1
        if not finite:
            state["skipped"] += 1
            state["consecutive_skipped"] += 1
            logger.warning(
                "non-finite loss or gradient at iteration %d: step skipped (%d in a row)",
                it,
                state["consecutive_skipped"],
            )
            if writer:
                writer.write(it, {"train/skipped": state["skipped"]}, epoch=state["epoch"])
            if state["consecutive_skipped"] >= args.max_skipped_steps:
                raise NonFiniteLossError(
                    f"{state['consecutive_skipped']} consecutive steps had a NaN/inf loss or gradient; stopping. "
                    f"Images of the last batch: {list(batch['image_path'])}. latest.pth holds the last good weights."
                )
            continue
        state["consecutive_skipped"] = 0
        meters["loss"].update(loss.item())
        if writer and (it % args.log_interval == 0):
            scalars = {
                "train/loss": loss.item(),
                "train/grad_norm": grad_norm.item(),
                "train/skipped": state["skipped"],
            }
            scalars.update({f"train/{k}": v.item() for k, v in terms.items()})
            scalars.update({f"train/lr_{g['name']}": g["lr"] for g in optimizer.param_groups})
            scalars["train/lr"] = optimizer.param_groups[0]["lr"]
            if scaler:
                scalars["train/loss_scale"] = scaler.get_scale()
            elapsed = time.time() - start_time
            scalars["train/samples_per_sec"] = (it + 1 - start_it) * x.shape[0] * info.world_size / max(elapsed, 1e-9)
            writer.write(it, scalars, epoch=state["epoch"])
            logger.info(
                "epoch %d iter %d/%d loss %.4f (%s) lr %.2e %.1f samples/s",
                state["epoch"],
                it,
                state["total_iters"],
                loss.item(),
                " ".join(f"{k} {v.item():.4f}" for k, v in terms.items()),
                scalars["train/lr"],
                scalars["train/samples_per_sec"],
            )
        if args.save_every and state["iteration"] % args.save_every == 0:
            save_fn()
        if args.max_steps and state["iteration"] >= args.max_steps:
            break
    logger.info("epoch %d done: mean loss %.4f over %d steps", state["epoch"], meters["loss"].avg, meters["loss"].count)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, args, info: DistInfo) -> dict[str, float]:
    """Metrics over the whole validation set, identical for any number of processes.

    Each rank takes every world_size-th image (no padding, no duplicates); per-metric sums and counts are
    all-reduced. Predictions are resized (bilinear) to the ground truth's size. `zoom_slope` is averaged over
    images with intrinsics (d log depth / d log zoom; 0 is camera-aware, -1 reads scale from apparent size).
    """
    model.eval()
    shard = Subset(dataset, list(range(info.rank, len(dataset), info.world_size)))
    loader = DataLoader(shard, batch_size=1, num_workers=args.workers, pin_memory=info.device.type == "cuda")
    metrics = MetricAccumulator()
    zoom = torch.zeros(2, dtype=torch.float64)

    def predict(image: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        with autocast_context(info.device, args.precision):
            if args.use_camera_intrinsics:
                return model(image, K, torch.ones(image.shape[0], dtype=torch.bool, device=image.device)).float()
            return model(image).float()

    for batch in loader:
        batch = to_device(batch, info.device)
        with autocast_context(info.device, args.precision):
            if args.use_camera_intrinsics:
                pred = model(batch["image"], batch["intrinsics"], batch["has_intrinsics"])
            else:
                pred = model(batch["image"])
        gt = batch["depth"]
        pred = F.interpolate(pred[:, None].float(), gt.shape[-2:], mode="bilinear", align_corners=True)[:, 0]
        valid = batch["valid_mask"] & (gt >= args.eval_min_depth) & (gt <= args.eval_max_depth)
        crop = eval_crop_mask(gt.shape[-2], gt.shape[-1], args.eval_crop)
        valid = valid & torch.as_tensor(crop, device=gt.device)
        metrics.update(pred, gt, valid)
        if args.zoom_factor > 1 and bool(batch["has_intrinsics"].all()):
            image_valid = batch.get("image_valid", torch.ones_like(batch["image"][:, 0], dtype=torch.bool))
            slopes = zoom_slope(predict, batch["image"], batch["intrinsics"], image_valid, z=args.zoom_factor)
            slopes = slopes[torch.isfinite(slopes)]
            zoom += torch.tensor([slopes.sum().item(), slopes.numel()], dtype=torch.float64)
    metrics.all_reduce()
    results = metrics.compute()
    zoom = all_reduce_sum(zoom.to(info.device)).cpu()
    if zoom[1] > 0:
        results["zoom_slope"] = (zoom[0] / zoom[1]).item()
    return results
