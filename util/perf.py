"""Runtime settings and measurement helpers for performance work (benchmarks/bench.py, train.py, run.py).

    from util.perf import tune_allocator
    tune_allocator()  # first thing in a script, before torch allocates its large buffers

Why the allocator: glibc returns freed memory above its trim threshold to the kernel and serves blocks above its
mmap threshold with fresh mappings, so a network that frees and reallocates the same activation buffers every
layer pays page faults on each. Raising the thresholds keeps those pages in the process (numbers in
benchmarks/results.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

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


def peak_rss_bytes() -> int:
    """The process's peak resident memory (VmHWM) in bytes since it started; 0 where /proc is unavailable.

    A process-lifetime high-water mark: measure each configuration in a fresh process.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def time_runs(fn: Callable[[], object], warmup: int = 2, repeats: int = 7) -> list[float]:
    """Wall-clock seconds of `repeats` calls of fn after `warmup` untimed calls (CUDA is synchronised)."""

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


class _AttentionFlops(TorchFunctionMode):
    """Counts the matmul FLOPs of `F.scaled_dot_product_attention`, which FlopCounterMode misses on CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.scaled_dot_product_attention:
            q, k = args[0], args[1]
            # q k^T and p v: 2 FLOPs per multiply-add each, (B, heads, Nq, Nk, head_dim).
            forward = 4 * q.shape[:-1].numel() * k.shape[-2] * q.shape[-1]
            self.flops += forward
            out = func(*args, **(kwargs or {}))
            if out.requires_grad:  # its backward (dV, dP, dQ, dK): four matmuls of the same size, if it runs
                out.register_hook(lambda grad: self._add(2 * forward))
            return out
        return func(*args, **(kwargs or {}))

    def _add(self, flops: int) -> None:
        self.flops += flops


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of fn: its forward ops, and its backward if fn runs one.

    torch.utils.flop_counter counts matmuls and convolutions (forward and backward), but reports 0 for
    scaled_dot_product_attention on CPU, so attention is added as 4 * B * heads * N^2 * head_dim per call, and
    twice that again when its backward runs.
    """
    attention = _AttentionFlops()
    with FlopCounterMode(display=False) as counter, attention:
        fn()
    return counter.get_total_flops() + attention.flops


def matmul_gflops(dtype: torch.dtype, n: int = 2048, warmup: int = 3, repeats: int = 15) -> float:
    """Achieved GFLOP/s of an n x n x n matmul on the current device: the practical compute ceiling.

    The better of A @ B and A @ B^T (medians): which operand layout the BLAS runs fastest varies by dtype and
    size (fp32 at 2048 on AVX-512: 160 vs 210 GFLOP/s), and a ceiling should not be the slow case.
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    seconds = min(
        statistics.median(time_runs(lambda: torch.mm(a, rhs, out=out), warmup, repeats)) for rhs in (b, b.t())
    )
    return 2 * n**3 / seconds / 1e9


def compile_frozen(model: torch.nn.Module) -> torch.nn.Module:
    """torch.compile `model` in place for inference, with inductor's freezing: its parameters become constants
    of the compiled graph, so their bf16 casts under autocast are folded away and oneDNN gets pre-packed weights
    (vits bf16 forward at 518 px on 2 cores: 0.206 s instead of 0.238 s eager; 0.224 s compiled without freezing
    in an earlier run; benchmarks/results.md).

    Freezing applies to calls with gradients off (inference mode or no_grad). Load the weights first: weights
    folded into the graph keep the values they had at the first call. The first call compiles (about 30 s for
    vits at 518 px on 2 cores), and a new input shape can compile again.

    Returns:
        `model` itself, whose forward now runs compiled.
    """
    model.compile(options={"freezing": True})
    return model
