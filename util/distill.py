"""The frozen teacher of teacher-student distillation, and the student's combined loss.

The teacher is a camera-less Depth Anything V2 built from `--teacher-checkpoint`: eval mode, no gradients,
run under inference mode (optionally in bf16), never wrapped in DDP, on the student's device. The student
learns metric scale from ground truth and structure from the teacher through a scale-invariant loss, so the
teacher's focal-length-dependent scale error is not transferred (docs/CAMERA.md, "Distillation").
"""

from __future__ import annotations

import argparse
import logging
import math

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from dataset import DataError, GenericDatasetWithIntrinsics
from depth_anything_v2.loading import (
    CheckpointError,
    build_model_from_checkpoint,
    checkpoint_config,
    checkpoint_kind,
    read_checkpoint,
)

from .dist import DistInfo, barrier
from .loss import distillation_per_image, silog_per_image
from .teacher_cache import cache_teacher_predictions
from .teacher_check import judge_teacher, teacher_problem

logger = logging.getLogger(__name__)


class TeacherError(RuntimeError):
    """A teacher checkpoint that cannot teach this student, with the reason and what to use instead."""


class FrozenTeacher(nn.Module):
    """A frozen camera-less metric depth model that produces distillation targets.

    Args:
        checkpoint: official or our checkpoint (a camera encoder in it is ignored).
        device: where the student runs.
        encoder, max_depth: for official checkpoints only (ours carry their config, and a value that conflicts with
            it is refused); the metric range does not matter, the distillation loss is scale-invariant.
        bf16: run the teacher under bf16 autocast (its outputs are returned in fp32).
        obj: the checkpoint already read from `checkpoint` (it is not read again).

    Attribute `kind`: 'metric' when our config or the official file name says so, None when unknown. A relative
    (disparity) teacher is refused: its output rises where depth falls, so it would teach inverted structure.
    Whatever the kind, `build_teacher` judges the teacher's output before training (`util.teacher_check`).
    """

    def __init__(
        self,
        checkpoint: str,
        device: torch.device,
        encoder: str | None = None,
        max_depth: float | None = None,
        bf16: bool = False,
        obj: dict | None = None,
    ) -> None:
        super().__init__()
        obj = read_checkpoint(checkpoint) if obj is None else obj
        self.kind = checkpoint_kind(checkpoint, obj)
        if self.kind == "relative":
            raise TeacherError(
                f"{checkpoint} is a relative model (it predicts disparity, which rises where depth falls), so it "
                "would teach inverted structure; use a metric teacher such as "
                "depth_anything_v2_metric_hypersim_<encoder>.pth (indoor) or ..._metric_vkitti_<encoder>.pth"
            )
        self.model = build_model_from_checkpoint(checkpoint, device, encoder=encoder, max_depth=max_depth, obj=obj)
        if self.model.cam_encoder is not None:
            self.model.cam_encoder = None
            self.model.config["use_camera_intrinsics"] = False
        self.model.requires_grad_(False).eval()
        self.checkpoint, self.bf16 = checkpoint, bf16

    def train(self, mode: bool = True) -> FrozenTeacher:
        """The teacher stays in eval mode whatever the trainer asks."""
        return super().train(False)

    @torch.inference_mode()
    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalized image -> (B, H, W) fp32 teacher depth (a plain tensor, usable in autograd)."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            depth = self.model(x)
        return depth.float().clone()

    def describe(self) -> str:
        """One line for the log: file, encoder, kind, metric range and precision."""
        kind = self.kind or "metric by assumption (name and config do not say)"
        return (
            f"teacher {self.checkpoint}: {self.model.encoder}, {kind}, max depth {self.model.max_depth:g} m, "
            f"{'bf16' if self.bf16 else 'fp32'}"
        )


def student_loss(
    pred: Tensor,
    batch: dict[str, Tensor],
    min_depth: float = 0.0,
    max_depth: float = math.inf,
    teacher_depth: Tensor | None = None,
    distill_weight: float = 1.0,
    images_in_step: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its logged terms: each term is a sum of per-image losses divided by the number of images of
    the optimizer step, so the micro-batches of an accumulated step add up to the loss of the whole step's batch
    exactly (an image without usable pixels adds 0 and still counts).

    Args:
        pred: (B, H, W) student depth in metres.
        batch: the dataset batch (`depth`, `depth_valid`, `image_valid`).
        min_depth, max_depth: ground-truth pixels outside [min_depth, max_depth] m are ignored (by default none:
            a training batch's `depth_valid` already holds each sample's own dataset's range).
        teacher_depth: (B, H, W) teacher depth, or None without distillation.
        distill_weight: weight of the scale-invariant distillation term.
        images_in_step: images of the whole optimizer step (--bs x --accum-iter); default B.

    Returns:
        (loss, {'loss_gt': ..., 'loss_distill': ...}), the terms detached.
    """
    images = images_in_step or pred.shape[0]
    gt = batch["depth"]
    valid = batch["depth_valid"]
    if min_depth > 0 or max_depth < math.inf:
        valid = valid & (gt >= min_depth) & (gt <= max_depth)
    loss_gt = silog_per_image(pred, gt, valid)[0].sum() / images
    terms = {"loss_gt": loss_gt.detach()}
    loss = loss_gt
    if teacher_depth is not None:
        loss_distill = distillation_per_image(pred, teacher_depth, batch["image_valid"])[0].sum() / images
        terms["loss_distill"] = loss_distill.detach()
        loss = loss + distill_weight * loss_distill
    return loss, terms


def build_teacher(args: argparse.Namespace, info: DistInfo, val_set: Dataset) -> FrozenTeacher | None:
    """The frozen teacher of --use-distillation, judged on a few validation images (`util.teacher_check`) and
    refused when it would teach nothing, unless --no-teacher-check. Built under a forked RNG, so the student's
    initialisation does not depend on whether there is a teacher."""
    if not args.use_distillation:
        return None
    try:
        obj = read_checkpoint(args.teacher_checkpoint)
        with torch.random.fork_rng(devices=[]):
            teacher = FrozenTeacher(
                args.teacher_checkpoint,
                info.device,
                encoder=args.teacher_encoder,
                max_depth=args.max_depth if checkpoint_config(obj) is None else None,
                bf16=args.teacher_precision == "bf16",
                obj=obj,
            )
    except (CheckpointError, TeacherError) as err:
        raise SystemExit(f"--teacher-checkpoint: {err}") from None
    logger.info("%s", teacher.describe())
    judgement = judge_teacher(teacher, val_set, teacher.model.max_depth, info.device)
    problem = teacher_problem(judgement)
    if problem is None:
        logger.info("teacher judged: %s", judgement.describe())
    elif args.teacher_check:
        raise SystemExit(
            f"--teacher-checkpoint {args.teacher_checkpoint}: {problem} ({judgement.describe()}). Use a teacher "
            "that predicts the depth of such scenes, or --no-teacher-check to distil from it anyway"
        )
    else:
        logger.warning("--no-teacher-check: distilling from a teacher that would be refused: %s (%s)", problem,
                       judgement.describe())  # fmt: skip
    return teacher


def fill_teacher_cache(
    teacher: FrozenTeacher, train_set: GenericDatasetWithIntrinsics, args: argparse.Namespace, info: DistInfo
) -> None:
    """With --cache-teacher: the teacher's predictions of every training image, written before training."""
    try:
        computed, reused, skipped = cache_teacher_predictions(
            teacher, train_set, args.img_size, info.rank, info.world_size
        )
    except DataError as err:
        raise SystemExit(f"teacher cache: {err} (add --skip-bad-samples to skip such images)") from None
    barrier()
    logger.info(
        "teacher predictions cached in %s: %d computed, %d reused, %d skipped by this process",
        train_set.teacher_cache, computed, reused, len(skipped),
    )  # fmt: skip
