"""Measuring tools of the benchmarks: wall-clock timing, peak memory, FLOP counting and the matmul ceiling."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode


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


def openvino_profile(graph: str, feeds: dict, precision: str, calls: int = 5) -> dict:
    """OpenVINO's per-layer performance counters of one graph on the CPU, averaged over `calls` inferences after
    two warm-up ones, with the inputs reshaped to the feeds' static shapes (as `inference.backends` runs graphs).

    Returns:
        {'total_ms': ms per inference summed over layers, 'by_type': [(layer type, kernel, ms)], 'layers': [(name,
        layer type, kernel, ms)]}, both lists slowest first.
    """
    import openvino as ov

    core = ov.Core()
    model = core.read_model(graph)
    model.reshape({port.get_any_name(): list(array.shape) for port, array in zip(model.inputs, feeds.values())})
    hint = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "PERF_COUNT": True}
    request = core.compile_model(model, "CPU", hint).create_infer_request()
    inputs = list(feeds.values())
    for _ in range(2):
        request.infer(inputs)
    layers: dict[tuple[str, str, str], float] = {}
    for _ in range(calls):
        request.infer(inputs)
        for info in request.get_profiling_info():
            if info.status == info.Status.EXECUTED:
                key = (info.node_name, info.node_type, info.exec_type)
                layers[key] = layers.get(key, 0.0) + info.real_time.total_seconds() * 1e3 / calls
    by_type: dict[tuple[str, str], float] = {}
    for (_, node_type, exec_type), ms in layers.items():
        by_type[(node_type, exec_type)] = by_type.get((node_type, exec_type), 0.0) + ms
    return {
        "total_ms": sum(layers.values()),
        "by_type": sorted(((*key, ms) for key, ms in by_type.items()), key=lambda row: -row[-1]),
        "layers": sorted(((*key, ms) for key, ms in layers.items()), key=lambda row: -row[-1]),
    }
