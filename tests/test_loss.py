"""Losses: hand-computed values, per-image averaging, masks, scale invariance, finiteness without supervision."""

from __future__ import annotations

import math

import pytest
import torch

from util.loss import _trim_mask, distillation_loss, gradient_matching_loss, silog_loss


def positive_depth(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.5 + 10 * torch.rand(*shape, generator=generator)


def test_silog_hand_computed() -> None:
    target = torch.tensor([[[1.0, 2.0], [4.0, 8.0]]])
    g = torch.tensor([[[0.1, 0.3], [-0.2, 0.4]]])
    pred = target * g.exp()
    # mean(g) = 0.15, mean(g^2) = (0.01 + 0.09 + 0.04 + 0.16) / 4 = 0.075, radicand = 0.075 - 0.5 * 0.0225
    expected = math.sqrt(0.06375)
    loss = silog_loss(pred, target, torch.ones(1, 2, 2, dtype=torch.bool))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert silog_loss(pred, target, torch.ones(1, 2, 2, dtype=torch.bool), lambd=1.0).item() == pytest.approx(
        math.sqrt(0.075 - 0.0225), rel=1e-5
    )


def test_zero_error_gives_zero_loss_and_finite_gradients() -> None:
    target = positive_depth(2, 10, 12)
    valid = torch.ones(2, 10, 12, dtype=torch.bool)
    for loss_fn in (silog_loss, distillation_loss):
        pred = target.clone().requires_grad_()
        loss = loss_fn(pred, target, valid)
        (grad,) = torch.autograd.grad(loss, pred)
        assert loss.item() == pytest.approx(0.0, abs=1e-6)
        assert torch.isfinite(grad).all()


def test_silog_is_per_image_and_skips_images_without_valid_pixels() -> None:
    pred, target = positive_depth(3, 8, 9, seed=1), positive_depth(3, 8, 9, seed=2)
    valid = torch.zeros(3, 8, 9, dtype=torch.bool)
    valid[0] = True
    valid[1, :2, :3] = True
    singles = [silog_loss(pred[i : i + 1], target[i : i + 1], valid[i : i + 1]) for i in range(2)]
    batch = silog_loss(pred, target, valid)
    torch.testing.assert_close(batch, (singles[0] + singles[1]) / 2)
    flattened = silog_loss(pred[valid][None, None], target[valid][None, None], valid[valid][None, None])
    assert abs(batch.item() - flattened.item()) > 1e-3


def test_silog_ignores_invalid_targets_and_keeps_gradients_finite() -> None:
    target = positive_depth(1, 6, 7)
    valid = torch.ones(1, 6, 7, dtype=torch.bool)
    reference = silog_loss(target * 1.3, target, valid).item()
    assert reference == pytest.approx(math.sqrt(0.5) * math.log(1.3), rel=1e-4)
    target[0, 0, :4] = torch.tensor([0.0, math.nan, math.inf, -2.0])
    pred = target * 1.3
    pred[0, 0, :4] = torch.tensor([math.inf, math.nan, 0.0, -1.0])
    pred.requires_grad_()
    loss = silog_loss(pred, target, valid)
    loss.backward()
    assert loss.item() == pytest.approx(reference, rel=1e-6)
    assert torch.isfinite(pred.grad).all() and (pred.grad[0, 0, :4] == 0).all()


def test_losses_without_any_valid_pixel_are_finite_zero_with_graph() -> None:
    pred = positive_depth(2, 5, 6).requires_grad_()
    teacher = positive_depth(2, 5, 6, seed=3)
    none = torch.zeros(2, 5, 6, dtype=torch.bool)
    for loss in (silog_loss(pred, teacher, none), distillation_loss(pred, teacher, none)):
        assert loss.item() == 0.0 and loss.requires_grad
        (grad,) = torch.autograd.grad(loss, pred)
        assert torch.isfinite(grad).all()
    single = torch.zeros(2, 5, 6, dtype=torch.bool)
    single[:, 0, 0] = True  # one pixel per image: no variance to measure
    assert distillation_loss(pred, teacher, single).item() == 0.0
    assert gradient_matching_loss(pred, teacher, single).item() == 0.0


def test_losses_are_float32_under_autocast() -> None:
    pred, target = positive_depth(1, 8, 8).bfloat16(), positive_depth(1, 8, 8, seed=4).bfloat16()
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = [silog_loss(pred, target, valid), distillation_loss(pred, target, valid)]
        losses.append(gradient_matching_loss(pred, target, valid))
    assert all(loss.dtype == torch.float32 for loss in losses)


def test_distillation_hand_computed_without_trimming() -> None:
    teacher = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    r = torch.tensor([[[0.0, 0.2], [0.4, 0.6]]])
    # mean(r) = 0.3, Var(r) = (0.09 + 0.01 + 0.01 + 0.09) / 4 = 0.05
    loss = distillation_loss(teacher * r.exp(), teacher, torch.ones(1, 2, 2, dtype=torch.bool), trim=0.0)
    assert loss.item() == pytest.approx(math.sqrt(0.05), rel=1e-5)


def test_distillation_scale_invariance_and_zero_for_scaled_teacher() -> None:
    student, teacher = positive_depth(2, 12, 14, seed=5), positive_depth(2, 12, 14, seed=6)
    valid = torch.rand(2, 12, 14, generator=torch.Generator().manual_seed(7)) > 0.2
    loss = distillation_loss(student, teacher, valid)
    assert loss.item() > 0.1
    assert abs(distillation_loss(student, teacher * 3.7, valid).item() - loss.item()) < 1e-6
    assert distillation_loss(teacher * 2.5, teacher, valid).item() < 1e-6


def test_trim_mask_keeps_the_first_n_keep_of_a_stable_sort() -> None:
    """The selection equals ranking by a stable sort of |r - median|, with ties, holes in omega and an empty row."""
    generator = torch.Generator().manual_seed(3)
    r = torch.randint(0, 6, (4, 200), generator=generator).float()  # many ties at every cut
    omega = torch.rand(4, 200, generator=generator) > 0.3
    omega[3] = False
    for trim in (0.0, 0.1, 0.37):
        n = omega.sum(dim=1)
        n_keep = n - torch.floor(trim * n.double()).long()
        median = torch.where(omega, r, math.nan).nanmedian(dim=1, keepdim=True).values
        deviation = torch.where(omega, (r - median).abs(), math.inf)
        order = deviation.argsort(dim=1, stable=True)
        ranks = torch.empty_like(order).scatter_(1, order, torch.arange(200).expand(4, 200))
        kept = _trim_mask(r, omega, trim)
        assert torch.equal(kept, ranks < n_keep[:, None]), trim
        assert torch.equal(kept.sum(dim=1), n_keep) and not (kept & ~omega).any()


def test_distillation_trims_exactly_the_largest_deviations() -> None:
    teacher = positive_depth(1, 10, 10, seed=8)
    valid = torch.ones(1, 10, 10, dtype=torch.bool)
    student = teacher * 2.0
    student.view(-1)[:10] *= torch.linspace(3.0, 5.0, 10)  # 10 outliers of 100 pixels
    assert distillation_loss(student, teacher, valid, trim=0.1).item() < 1e-6
    assert distillation_loss(student, teacher, valid, trim=0.09).item() > 0.01
    assert distillation_loss(student, teacher, valid, trim=0.0).item() > 0.1
    with pytest.raises(ValueError, match="trim"):
        distillation_loss(student, teacher, valid, trim=1.0)


def test_distillation_saturation_mask_and_detached_teacher() -> None:
    teacher = positive_depth(1, 9, 9, seed=9).requires_grad_()
    student = (teacher.detach() * 0.5).requires_grad_()
    saturated = teacher.detach() > 8.0
    with torch.no_grad():
        student[saturated] = 0.1  # wrong only where the teacher is saturated
    valid = torch.ones(1, 9, 9, dtype=torch.bool)
    assert distillation_loss(student, teacher, valid, trim=0.0, saturation=8.0).item() < 1e-6
    loss = distillation_loss(student, teacher, valid, trim=0.0)
    assert loss.item() > 0.1
    loss.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_gradient_matching_hand_computed_and_masked() -> None:
    teacher = torch.full((1, 2, 3), 2.0)
    r = torch.tensor([[[0.0, 0.1, 0.3], [0.0, 0.1, 0.3]]])
    student = teacher * r.exp()
    valid = torch.ones(1, 2, 3, dtype=torch.bool)
    # scale 0: |dx| sums to 2 * (0.1 + 0.2), dy = 0, over 6 pixels; scale 1 keeps [[0, 0.3]]: 0.3 over 2 pixels
    assert gradient_matching_loss(student, teacher, valid, scales=1).item() == pytest.approx(0.1, rel=1e-5)
    assert gradient_matching_loss(student, teacher, valid, scales=2).item() == pytest.approx(0.25, rel=1e-5)
    valid[0, 0, 2] = False  # drops the 0.2 step of the first row and the dy pair of column 2
    assert gradient_matching_loss(student, teacher, valid, scales=1).item() == pytest.approx(0.4 / 5, rel=1e-5)


def test_gradient_matching_scale_invariance() -> None:
    student, teacher = positive_depth(2, 16, 16, seed=10), positive_depth(2, 16, 16, seed=11)
    valid = torch.ones(2, 16, 16, dtype=torch.bool)
    loss = gradient_matching_loss(student, teacher, valid)
    assert loss.item() > 0.1
    assert abs(gradient_matching_loss(student, teacher * 3.7, valid).item() - loss.item()) < 1e-5
    assert gradient_matching_loss(teacher * 0.3, teacher, valid).item() < 1e-5
