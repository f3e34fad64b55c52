"""The optimizer and its learning-rate schedule: AdamW in parameter groups, linear warm-up then poly decay."""

from __future__ import annotations

import argparse

import torch
from torch import nn


def get_lr(it: int, total_iters: int, base_lr: float, warmup_iters: int = 0) -> float:
    """Linear warm-up, then poly decay base_lr * (1 - it / total)^0.9, applied from iteration 0."""
    if it < warmup_iters:
        return base_lr * (it + 1) / warmup_iters
    return base_lr * max(1.0 - it / total_iters, 0.0) ** 0.9


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to `lr` times its `lr_scale`."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]


def build_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.AdamW:
    """AdamW: backbone at lr (only when unfrozen), head and camera encoder at 10x; no decay on norms, biases,
    tokens and other 1-D or position parameters."""
    groups: dict[tuple[str, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "backbone" if name.startswith("pretrained.") else "head"
        no_decay = param.ndim <= 1 or name.endswith(("token", "tokens", "pos_embed", "ray_pos"))
        groups.setdefault((part, no_decay), []).append(param)
    param_groups = [
        {
            "params": params,
            "name": f"{part}{'_no_decay' if no_decay else ''}",
            "lr_scale": 1.0 if part == "backbone" else 10.0,
            "weight_decay": 0.0 if no_decay else args.weight_decay,
        }
        for (part, no_decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=args.lr, betas=(0.9, 0.999))
