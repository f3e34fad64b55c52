"""The frozen teacher of teacher-student distillation, and the student's combined loss.

The teacher is a camera-less Depth Anything V2 built from `--teacher-checkpoint`: eval mode, no gradients,
run under inference mode (optionally in bf16), never wrapped in DDP, on the student's device. The student
learns metric scale from ground truth and structure from the teacher through a scale-invariant loss, so the
teacher's focal-length-dependent scale error is not transferred (docs/CAMERA.md, "Distillation").
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from depth_anything_v2.loading import build_model_from_checkpoint

from .loss import distillation_loss, silog_loss


class FrozenTeacher(nn.Module):
    """A frozen camera-less depth model that produces distillation targets.

    Args:
        checkpoint: official or our checkpoint (a camera encoder in it is ignored).
        device: where the student runs.
        encoder, max_depth: for official checkpoints (ours carry their config).
        bf16: run the teacher under bf16 autocast (its outputs are returned in fp32).
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
        self.model = build_model_from_checkpoint(checkpoint, device, encoder=encoder, max_depth=max_depth)
        if self.model.cam_encoder is not None:
            self.model.cam_encoder = None
            self.model.config["use_camera_intrinsics"] = False
        self.model.requires_grad_(False).eval()
        self.bf16 = bf16

    def train(self, mode: bool = True) -> FrozenTeacher:
        """The teacher stays in eval mode whatever the trainer asks."""
        return super().train(False)

    @torch.inference_mode()
    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalized image -> (B, H, W) fp32 teacher depth (a plain tensor, usable in autograd)."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            depth = self.model(x)
        return depth.float().clone()


@torch.inference_mode()
def cache_teacher_predictions(
    teacher: FrozenTeacher, dataset, cache_dir: str | Path, input_size: int, rank: int = 0, world_size: int = 1
) -> int:
    """Run the teacher once per training image and store its depth at the image's own resolution.

    The dataset then warps `<index>.npy` with each sample's augmentation (nearest, like the ground truth), so
    the teacher need not run every step. The cached target is the teacher's view of the whole image rather than
    of the crop; the distillation loss is scale-invariant, so the zoom's change of apparent scale does not
    matter. Files already present are kept (a resumed run does not recompute them).

    Args:
        teacher: the frozen teacher.
        dataset: a GenericDatasetWithIntrinsics (its `load(index)` gives the RGB image).
        cache_dir: output folder.
        input_size: network short side for the teacher (use the training crop size).
        rank, world_size: each process computes every world_size-th image.

    Returns:
        Number of predictions computed by this process.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    computed = 0
    for index in range(rank, len(dataset), world_size):
        path = cache_dir / f"{index}.npy"
        if path.exists():
            continue
        rgb = dataset.load(index)[0]
        device_type = next(teacher.model.parameters()).device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=teacher.bf16):
            depth = teacher.model.infer_image(np.ascontiguousarray(rgb[..., ::-1]), input_size)
        tmp = cache_dir / f".{index}.npy.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            np.save(f, depth.astype(np.float32))
        os.replace(tmp, path)
        computed += 1
    return computed


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
