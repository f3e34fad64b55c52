"""Gradient accumulation is exact by construction: `--bs 1 --accum-iter 2` and `--bs 2` compute the same loss and
gradient (each micro-batch's loss is a sum of per-image terms over the images of the whole step), which float64
shows to rounding; in float32 the two paths round differently and Adam's first steps amplify it (docs/RUNS.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from dataset import GenericDatasetWithIntrinsics
from dataset.mixture_dataset import MixtureDataset
from dataset.synthetic import write_synthetic_dataset
from util.checkpoint import TrainState
from util.dist import DistInfo
from util.distill import student_loss
from util.engine import train_one_epoch
from util.monitor import CollapseMonitor
from util.optim import build_optimizer
from util.sampler import ResumableSampler


class DoubleDepthNet(nn.Module):
    """A float64 stand-in for the student (the real model computes parts of its head in float32): a 'backbone' and a
    'head' of 1x1 convolutions on the fp32 image, positive depth in metres, (B, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pretrained = nn.Conv2d(3, 8, 1).double()
        self.depth_head = nn.Conv2d(8, 1, 1).double()

    def forward(self, image: torch.Tensor, K: torch.Tensor, has_intrinsics: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(self.depth_head(torch.tanh(self.pretrained(image.double()))))[:, 0] + 0.1


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """4 training scenes; the third has no depth inside the training range (its loss term is 0)."""
    root = tmp_path_factory.mktemp("accum")
    write_synthetic_dataset(root, n_train=4, n_val=1, size=(56, 42), seed=7)
    depth = root / (root / "splits" / "train.txt").read_text().splitlines()[2].split()[1]
    np.save(depth, np.full_like(np.load(depth), 500.0))
    return root


def train_weights(scenes: Path, bs: int, accum_iter: int) -> dict[str, torch.Tensor]:
    """The stand-in's weights after 2 AdamW steps of batch bs x accum_iter over the same 4 samples."""
    dataset = GenericDatasetWithIntrinsics(scenes / "splits" / "train.txt", size=(42, 42), zoom_range=None)
    args = argparse.Namespace(
        lr=1e-3, weight_decay=0.01, warmup_iters=0, accum_iter=accum_iter, bs=bs, clip_grad=0.0, max_steps=0,
        log_interval=1000, save_every=0, min_depth=0.001, max_depth=10.0, distill_weight=1.0, precision="fp32",
        max_skipped_steps=5,
    )  # fmt: skip
    model = DoubleDepthNet()
    optimizer = build_optimizer(model, args)
    sampler = ResumableSampler([len(dataset)], per_rank=bs * accum_iter, seed=0)
    loader = DataLoader(MixtureDataset({"scenes": dataset}), batch_size=bs, sampler=sampler)
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    train_one_epoch(model, None, loader, optimizer, None, args, TrainState(total_iters=2), info, None, lambda: None,
                    CollapseMonitor())  # fmt: skip
    return model.state_dict()


def test_accumulated_micro_batches_train_like_one_batch_in_float64(scenes):
    one_batch = train_weights(scenes, bs=2, accum_iter=1)
    accumulated = train_weights(scenes, bs=1, accum_iter=2)
    for key, value in one_batch.items():
        torch.testing.assert_close(accumulated[key], value, rtol=0, atol=1e-12, msg=key)


def test_micro_batch_losses_add_up_to_the_step_loss_with_an_image_without_supervision():
    torch.manual_seed(0)
    pred = torch.rand(2, 6, 6, dtype=torch.float64, requires_grad=True) + 0.5
    batch = {
        "depth": torch.rand(2, 6, 6) * 4 + 1,
        "depth_valid": torch.ones(2, 6, 6, dtype=torch.bool),
        "image_valid": torch.ones(2, 6, 6, dtype=torch.bool),
    }
    batch["depth_valid"][1] = False  # no ground truth in the second image
    teacher = torch.rand(2, 6, 6) + 1
    teacher[0] = -1.0  # a teacher map without a usable pixel in the first image

    def loss_of(index: slice, images: int) -> torch.Tensor:
        part = {k: v[index] for k, v in batch.items()}
        return student_loss(pred[index], part, 0.001, 10.0, teacher[index], 1.0, images_in_step=images)[0]

    whole = loss_of(slice(0, 2), 2)
    (whole_grad,) = torch.autograd.grad(whole, pred)
    parts = loss_of(slice(0, 1), 2) + loss_of(slice(1, 2), 2)
    (parts_grad,) = torch.autograd.grad(parts, pred)
    assert parts.item() == whole.item() and torch.equal(parts_grad, whole_grad)
