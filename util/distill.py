"""The frozen teacher of teacher-student distillation, and the student's combined loss.

The teacher is a camera-less Depth Anything V2 built from `--teacher-checkpoint`: eval mode, no gradients,
run under inference mode (optionally in bf16), never wrapped in DDP, on the student's device. The student
learns metric scale from ground truth and structure from the teacher through a scale-invariant loss, so the
teacher's focal-length-dependent scale error is not transferred (docs/CAMERA.md, "Distillation").
"""

from __future__ import annotations

import argparse
import logging

import torch
import torch.nn.functional as F
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
from .loss import distillation_loss, silog_loss
from .precision import teacher_uses_bf16
from .teacher_cache import cache_teacher_predictions

logger = logging.getLogger(__name__)


class TeacherError(RuntimeError):
    """A teacher checkpoint that cannot teach this student, with the reason and what to use instead."""


class FrozenTeacher(nn.Module):
    """A frozen camera-less metric depth model that produces distillation targets.

    Args:
        checkpoint: official or our checkpoint (a camera encoder in it is ignored).
        device: where the student runs.
        encoder, max_depth: for official checkpoints (ours carry their config; its metric range does not matter,
            the distillation loss is scale-invariant).
        bf16: run the teacher under bf16 autocast (its outputs are returned in fp32).

    Attribute `kind`: 'metric' when our config or the official file name says so, None when unknown (then
    `check_teacher_predicts_depth` should look at its output). A relative (disparity) teacher is refused: its
    output rises where depth falls, so it would teach inverted structure.
    """

    def __init__(
        self,
        checkpoint: str,
        device: torch.device,
        encoder: str | None = None,
        max_depth: float | None = None,
        bf16: bool = False,
    ) -> None:
        super().__init__()
        obj = read_checkpoint(checkpoint)
        self.kind = checkpoint_kind(checkpoint, obj)
        if self.kind == "relative":
            raise TeacherError(
                f"{checkpoint} is a relative model (it predicts disparity, which rises where depth falls), so it "
                "would teach inverted structure; use a metric teacher such as "
                "depth_anything_v2_metric_hypersim_<encoder>.pth (indoor) or ..._metric_vkitti_<encoder>.pth"
            )
        if checkpoint_config(obj) is not None:
            max_depth = None
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


def rank_correlation(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation of two 1-D tensors (ties broken by order)."""
    ranks = [
        torch.empty_like(x, dtype=torch.float64).scatter_(0, x.argsort(), torch.arange(len(x), dtype=torch.float64))
        for x in (a, b)
    ]
    ra, rb = (r - r.mean() for r in ranks)
    return float((ra * rb).sum() / ((ra.square().sum() * rb.square().sum()).sqrt() + 1e-12))


@torch.inference_mode()
def check_teacher_predicts_depth(
    teacher: FrozenTeacher, dataset, images: int = 4, device: torch.device | None = None
) -> float:
    """For a teacher of unknown kind: the rank correlation of its output with the ground truth of a few validation
    images; TeacherError when it is clearly negative (a relative model's disparity). Returns the correlation."""
    teacher_out, truth = [], []
    for index in range(min(images, len(dataset))):
        sample = dataset[index]
        pred = teacher(sample["image"][None].to(device or "cpu"))[0].cpu()
        gt = sample["depth"]
        pred = F.interpolate(pred[None, None], gt.shape, mode="bilinear", align_corners=True)[0, 0]
        teacher_out.append(pred[sample["depth_valid"]])
        truth.append(gt[sample["depth_valid"]])
    rho = rank_correlation(torch.cat(teacher_out), torch.cat(truth)) if teacher_out else 0.0
    if rho < -0.2:
        raise TeacherError(
            f"{teacher.checkpoint}: its output falls where the ground truth depth rises (rank correlation {rho:+.2f} "
            f"on {len(teacher_out)} validation images): it predicts disparity, so it is a relative model; use a "
            "metric teacher"
        )
    return rho


def student_loss(
    pred: Tensor,
    batch: dict[str, Tensor],
    min_depth: float,
    max_depth: float,
    teacher_depth: Tensor | None = None,
    distill_weight: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its logged terms.

    Args:
        pred: (B, H, W) student depth in metres.
        batch: the dataset batch (`depth`, `depth_valid`, `image_valid`).
        min_depth, max_depth: ground-truth pixels outside [min_depth, max_depth] m are ignored.
        teacher_depth: (B, H, W) teacher depth, or None without distillation.
        distill_weight: weight of the scale-invariant distillation term.

    Returns:
        (loss, {'loss_gt': ..., 'loss_distill': ...}), the terms detached.
    """
    gt = batch["depth"]
    valid = batch["depth_valid"] & (gt >= min_depth) & (gt <= max_depth)
    loss_gt = silog_loss(pred, gt, valid)
    terms = {"loss_gt": loss_gt.detach()}
    loss = loss_gt
    if teacher_depth is not None:
        loss_distill = distillation_loss(pred, teacher_depth, batch["image_valid"])
        terms["loss_distill"] = loss_distill.detach()
        loss = loss + distill_weight * loss_distill
    return loss, terms


def build_teacher(
    args: argparse.Namespace, info: DistInfo, train_set: GenericDatasetWithIntrinsics, val_set: Dataset
) -> FrozenTeacher | None:
    """The frozen teacher of --use-distillation, checked to predict depth; with --cache-teacher its predictions are
    written first."""
    if not args.use_distillation:
        return None
    try:
        teacher = FrozenTeacher(
            args.teacher_checkpoint,
            info.device,
            encoder=args.teacher_encoder,
            max_depth=args.max_depth,
            bf16=teacher_uses_bf16(args.teacher_precision, args.precision, info.device),
        )
        if teacher.kind is None:
            rho = check_teacher_predicts_depth(teacher, val_set, device=info.device)
            logger.info("teacher output vs ground truth: rank correlation %+.2f (positive: it predicts depth)", rho)
    except (CheckpointError, TeacherError) as err:
        raise SystemExit(f"--teacher-checkpoint: {err}") from None
    logger.info("%s", teacher.describe())
    if train_set.teacher_cache is not None:
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
    return teacher
