"""Training losses on metric depth, computed in float32 log space (also under autocast).

`silog_loss` supervises the student with ground truth. `distillation_loss` and `gradient_matching_loss` transfer
the teacher's structure (L_kd and L_grad of docs/CAMERA.md): both are exactly invariant to a global scale of the
teacher, so a teacher whose metric scale is off by f / f_ref cannot teach the student to read depth from apparent
size.

Invalid depth (0, NaN, inf, negative) is never an error: such pixels are dropped from the masks. Every loss is
finite and keeps the graph when no pixel is usable, so a batch without supervision contributes zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _log_depth(depth: Tensor, usable: Tensor, eps: float) -> Tensor:
    """log of depth (clamped at eps metres) where usable, 0 elsewhere.

    `torch.where` before the log keeps both the values and the gradients finite at unusable pixels (a masked
    product would turn an inf there into NaN in the backward pass).
    """
    return torch.log(torch.where(usable, depth.float(), 1.0).clamp_min(eps))


def _positive(depth: Tensor) -> Tensor:
    return torch.isfinite(depth) & (depth > 0)


def _sqrt(radicand: Tensor, eps: float) -> Tensor:
    """sqrt(max(radicand, 0)) with the gradient of sqrt(radicand + eps).

    The value is exact (0 for a perfect prediction, the official number otherwise); only the gradient is
    smoothed, so it stays bounded by 1 / (2 sqrt(eps)) where the radicand vanishes, e.g. at the student's
    initialisation as a copy of the teacher.
    """
    radicand = radicand.clamp_min(0)
    smooth = torch.sqrt(radicand + eps)
    return smooth + (torch.sqrt(radicand) - smooth).detach()


def _mean_over(per_image: Tensor, use: Tensor) -> Tensor:
    """Mean of per_image over the images flagged in use; 0 (still in the graph) when none is."""
    return (per_image * use).sum() / use.sum().clamp_min(1)


def silog_per_image(
    pred: Tensor, target: Tensor, valid: Tensor, lambd: float = 0.5, eps: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """The scale-invariant log loss of each image: (B,) losses (0 for an image without usable pixels) and (B,)
    bool flags of the images with at least one usable pixel. Arguments as `silog_loss`."""
    usable = valid & _positive(target)
    g = torch.where(usable, _log_depth(pred, usable, eps) - _log_depth(target, usable, eps), 0.0)
    n = usable.sum(dim=(1, 2))
    mean = g.sum(dim=(1, 2)) / n.clamp_min(1)
    mean_sq = (g * g).sum(dim=(1, 2)) / n.clamp_min(1)
    used = n > 0
    return _sqrt(mean_sq - lambd * mean * mean, eps) * used, used


def silog_loss(pred: Tensor, target: Tensor, valid: Tensor, lambd: float = 0.5, eps: float = 1e-6) -> Tensor:
    """Scale-invariant log loss against ground truth, per image, then averaged over images.

    With g = log(pred) - log(target) over the valid pixels of image b, L_b = sqrt(mean(g^2) - lambd mean(g)^2).
    The official DA-V2 `SiLogLoss` uses the same formula but flattened over the whole batch; here every image
    with at least one valid pixel weighs the same, whatever its number of valid pixels.

    Args:
        pred: (B, H, W) predicted depth, metres.
        target: (B, H, W) ground-truth depth, metres (invalid values are ignored).
        valid: (B, H, W) bool mask of supervised pixels.
        lambd: weight of the squared mean; 0.5 as DA-V2 (1 would make the loss fully scale invariant).
        eps: floor for the predicted depth (metres), and the offset that keeps the gradient of the square root
            finite at zero error (the value is not shifted).

    Returns:
        Scalar float32 tensor.
    """
    return _mean_over(*silog_per_image(pred, target, valid, lambd, eps))


def _trim_mask(r: Tensor, omega: Tensor, trim: float) -> Tensor:
    """Per row of (B, N) residuals, the pixels of omega left after dropping the trim fraction farthest from the
    row's median (DA-V2's trimming). Exactly n - floor(trim n) pixels are kept; of pixels tied at the cut, the first
    in the row are kept. A selection per row (kthvalue), not a sort.
    """
    n = omega.sum(dim=1)
    n_keep = n - torch.floor(trim * n.double()).long()
    median = torch.where(omega, r, math.nan).nanmedian(dim=1, keepdim=True).values
    deviation = torch.where(omega, (r - median).abs(), math.inf)
    cut = torch.stack(
        [row.kthvalue(k).values if k > 0 else row.new_tensor(-math.inf) for row, k in zip(deviation, n_keep.tolist())]
    )[:, None]
    below, tied = deviation < cut, deviation == cut
    room = n_keep[:, None] - below.sum(dim=1, keepdim=True)
    return below | (tied & (tied.cumsum(dim=1) <= room))


def distillation_per_image(
    student: Tensor,
    teacher: Tensor,
    valid: Tensor,
    trim: float = 0.1,
    saturation: float | None = None,
    eps: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """The distillation loss of each image (see `distillation_loss`).

    Args:
        student: (B, H, W) student depth, metres.
        teacher: (B, H, W) teacher depth, metres; no gradient flows into it.
        valid: (B, H, W) bool, pixels the teacher may supervise (e.g. not padding).
        trim: fraction of the largest residual deviations dropped per image, in [0, 1).
        saturation: teacher depths above this (metres, e.g. 0.95 max_depth) are dropped; None keeps them.
        eps: floor for the student depth (metres), and the gradient offset under the square root.

    Returns:
        (B,) float32 losses (0 for an image with fewer than 2 pixels in Omega) and (B,) bool flags of the images
        with at least 2.
    """
    if not 0 <= trim < 1:
        raise ValueError(f"distillation_loss: trim must be in [0, 1), got {trim}")
    teacher = teacher.detach().float()
    omega = valid & _positive(teacher)
    if saturation is not None:
        omega = omega & (teacher <= saturation)
    r = torch.where(omega, _log_depth(student, omega, eps) - _log_depth(teacher, omega, eps), 0.0).flatten(1)
    omega = omega.flatten(1)
    if trim > 0:
        omega = omega & _trim_mask(r.detach(), omega, trim)
    n = omega.sum(dim=1)
    mean = (r * omega).sum(dim=1, keepdim=True) / n.clamp_min(1)[:, None]
    var = (((r - mean) * omega) ** 2).sum(dim=1) / n.clamp_min(1)
    used = n >= 2
    return _sqrt(var, eps) * used, used


def distillation_loss(student: Tensor, teacher: Tensor, valid: Tensor, **options: float | None) -> Tensor:
    """Per-image scale-invariant log loss between student and teacher depth (docs/CAMERA.md, L_kd).

    With r = log D_S - log D_T (teacher detached) over Omega_b, L_b = sqrt(Var_Omega(r)) (gradient of sqrt(Var + eps)),
    averaged over the images with at least 2 pixels in Omega. Omega_b is the valid pixels with a positive finite
    teacher depth, minus teacher pixels above `saturation`, minus the `trim` fraction of pixels with the largest
    |r - median(r)|. The loss is exactly invariant to a global scale of either depth map.

    Args:
        student, teacher, valid: as `distillation_per_image`.
        options: `trim`, `saturation`, `eps` of `distillation_per_image`.

    Returns:
        Scalar float32 tensor.
    """
    return _mean_over(*distillation_per_image(student, teacher, valid, **options))


def gradient_matching_loss(
    student: Tensor, teacher: Tensor, valid: Tensor, scales: int = 4, eps: float = 1e-6
) -> Tensor:
    """Multi-scale log-gradient matching between student and teacher (docs/CAMERA.md, L_grad; MiDaS L_gm on log).

    With r = log D_S - log D_T (teacher detached), the sum over scales s = 0..scales-1 of
    (sum |d_x r_s| + sum |d_y r_s|) / (number of valid pixels at scale s), where r_s keeps every 2^s-th pixel and
    a finite difference counts only when both of its pixels are valid. A global scale of either map cancels.

    Args:
        student: (B, H, W) student depth, metres.
        teacher: (B, H, W) teacher depth, metres; no gradient flows into it.
        valid: (B, H, W) bool, pixels the teacher may supervise.
        scales: number of scales.
        eps: floor for the student depth, metres.

    Returns:
        Scalar float32 tensor.
    """
    teacher = teacher.detach().float()
    omega = valid & _positive(teacher)
    r = torch.where(omega, _log_depth(student, omega, eps) - _log_depth(teacher, omega, eps), 0.0)
    loss = r.sum() * 0
    for s in range(scales):
        step = 2**s
        r_s, m_s = r[:, ::step, ::step], omega[:, ::step, ::step]
        grad_x = (r_s[:, :, 1:] - r_s[:, :, :-1]).abs() * (m_s[:, :, 1:] & m_s[:, :, :-1])
        grad_y = (r_s[:, 1:] - r_s[:, :-1]).abs() * (m_s[:, 1:] & m_s[:, :-1])
        loss = loss + (grad_x.sum() + grad_y.sum()) / m_s.sum().clamp_min(1)
    return loss
