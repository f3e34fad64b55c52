"""FLOPs of our model whatever kernels it runs: a module of its own because it imports this repository's model,
which `perf_tools` must not (the official code's process imports `perf_tools` beside its own `depth_anything_v2`)."""

from __future__ import annotations

from typing import Callable

import torch
from perf_tools import count_flops

from depth_anything_v2.dinov2_layers import Attention, Linear


def count_model_flops(model: torch.nn.Module, fn: Callable[[], object]) -> int:
    """FLOPs of one call of fn (it is run) whatever the kernels chosen: attention as explicit matmuls, so that every
    attention matmul is seen (also those recomputed by activation checkpointing), and linear layers as aten
    matmuls (the flop counter does not see oneDNN's linear op)."""
    modules = [m for m in model.modules() if isinstance(m, (Attention, Linear))]
    impls = [m.impl for m in modules]
    for m in modules:
        m.impl = "explicit" if isinstance(m, Attention) else "aten"
    try:
        return count_flops(fn)
    finally:
        for m, impl in zip(modules, impls):
            m.impl = impl
