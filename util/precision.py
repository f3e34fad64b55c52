"""Runtime settings shared by train.py and run.py: precision (autocast), the allocator, compiling for inference,
the kernel choice of several processes.

    from util.precision import tune_allocator
    tune_allocator()  # first thing in a script, before torch allocates its large buffers

Why the allocator: glibc returns freed memory above its trim threshold to the kernel and serves blocks above its
mmap threshold with fresh mappings, so a network that frees and reallocates the same activation buffers every
layer pays page faults on each. Raising the thresholds keeps those pages in the process (the effect is measured
in benchmarks/results.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import platform

import torch
import torch.distributed as dist
from torch import nn

from depth_anything_v2.kernels import KernelChoice, autocast_context, tune_kernels

__all__ = ["autocast_context"]  # re-exported: train.py and inference/ take the run's autocast from here

PRECISIONS = ("fp32", "bf16", "fp16")
# Training with bf16 autocast on a CPU that emulates bf16, against fp32: the demo's teacher (vits, batch 8, 98 px)
# trained at 0.3 samples/s in bf16 and 1.2 in fp32 on a 2-core AMD EPYC (Zen 3, AVX2, no AVX512-BF16 or AMX).
EMULATED_BF16_SLOWDOWN = "about 4x slower than fp32 (0.3 against 1.2 samples/s on an AMD EPYC Zen 3 with AVX2 only)"


# glibc mallopt parameters (malloc.h) and the values we set; the same as the environment variable below.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MALLOC_SETTINGS = {"trim_threshold": 2**31 - 1, "top_pad": 1 << 30, "mmap_threshold": 32 << 20}
GLIBC_TUNABLES = ":".join(f"glibc.malloc.{name}={value}" for name, value in MALLOC_SETTINGS.items())


def tune_allocator() -> bool:
    """Keep freed memory in the process: glibc trim threshold 2 GiB, top pad 1 GiB, mmap threshold 32 MiB.

    Call it before torch allocates much: blocks already mapped keep their old behaviour. Equivalent to starting
    the process with `GLIBC_TUNABLES` set to this module's `GLIBC_TUNABLES`.

    Returns:
        True if all three settings were applied; False off glibc (macOS, Windows, musl), where it does nothing.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    settings = [
        (_M_TRIM_THRESHOLD, MALLOC_SETTINGS["trim_threshold"]),
        (_M_TOP_PAD, MALLOC_SETTINGS["top_pad"]),
        (_M_MMAP_THRESHOLD, MALLOC_SETTINGS["mmap_threshold"]),
    ]
    return all(libc.mallopt(param, value) == 1 for param, value in settings)


def has_fast_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively, so faster than fp32, on `device`: CUDA with bf16 support, or a CPU with
    AVX512-BF16 or AMX. (Elsewhere bf16 is emulated and slower than fp32.)"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in names)
    return False


def resolve_precision(requested: str, device: torch.device) -> tuple[str, str, str | None]:
    """The precision a run uses for --precision `requested` on `device`, why, and a warning when it will be slow.

    'auto' is bf16 where the device runs it natively (`has_fast_bf16`), fp32 elsewhere; an explicit value is kept.

    Returns:
        (precision, reason, warning or None).
    """
    fast = has_fast_bf16(device)
    where = "CUDA" if device.type == "cuda" else "this CPU" if device.type == "cpu" else device.type
    if requested != "auto":
        warning = None
        if requested == "bf16" and device.type == "cpu" and not fast:
            warning = (
                f"--precision bf16 on a CPU without native bf16 (no AVX512-BF16 or AMX): it is emulated, "
                f"{EMULATED_BF16_SLOWDOWN}; --precision auto or fp32 is faster here"
            )
        return requested, f"--precision {requested} was asked for", warning
    if fast:
        return "bf16", f"auto: {where} runs bf16 natively", None
    return "fp32", f"auto: {where} has no native bf16 (it would be emulated, slower than fp32)", None


def compile_frozen(model: torch.nn.Module) -> torch.nn.Module:
    """torch.compile `model` in place for inference, with inductor's freezing: its parameters become constants
    of the compiled graph, so their bf16 casts under autocast are folded away and oneDNN gets pre-packed weights.

    Freezing applies to calls with gradients off (inference mode or no_grad). Load the weights first: weights
    folded into the graph keep the values they had at the first call. The first call compiles (tens of seconds
    on a CPU), and a new input shape can compile again.

    Returns:
        `model` itself, whose forward now runs compiled.
    """
    model.compile(options={"freezing": True})
    return model


def teacher_uses_bf16(teacher_precision: str, precision: str, device: torch.device) -> bool:
    """Whether the frozen teacher runs under bf16 autocast (its depth stays within 0.5 % median of fp32,
    tests/test_precision.py): when asked, or with 'auto' where the student runs in half precision or the device
    runs bf16 natively."""
    if teacher_precision != "auto":
        return teacher_precision == "bf16"
    return precision != "fp32" or has_fast_bf16(device)


def choose_kernels(
    model: nn.Module, batch: int, size: int, precision: str, mode: str, forced: dict[str, str]
) -> KernelChoice:
    """`tune_kernels` for (batch, 3, size, size) inputs on rank 0 only (ranks sharing a machine would slow each
    other's timings down), then rank 0's choice on every rank, so that all of them compute alike."""
    distributed = dist.is_available() and dist.is_initialized()
    chosen: list[object] = [None]
    if not distributed or dist.get_rank() == 0:
        choice = tune_kernels(model, batch, size, size, precision, mode, forced)
        chosen = [dataclasses.asdict(choice)]
    if distributed:
        dist.broadcast_object_list(chosen, src=0)
    choice = KernelChoice(**chosen[0])
    choice.apply(model)
    return choice
