"""Kernel choices by measurement on the machine at hand, cached on disk.

Three choices change speed and nothing else (outputs equal to rounding, tested): the attention implementation
('sdpa': `F.scaled_dot_product_attention`; 'explicit': chunked matmul-softmax-matmul), the DPT head's memory
layout ('channels_last' | 'nchw') and, for fp32 inference on the CPU, the backbone's linear layers ('aten': the
BLAS of the torch build; 'onednn': oneDNN's matmul, `dinov2_layers.linear`). Which is faster depends on the CPU
(oneDNN's bf16 matmuls against SDPA's flash kernel differ between AVX512-BF16 and AMX; MKL's fp32 sgemm runs AVX2
code on AMD CPUs), the dtype and the shapes, so `tune_kernels` times the candidates briefly on first use, one
component at a time (one attention module on the model's token shape, the head on the model's feature shapes,
one feed-forward linear), and stores the winner in a JSON file keyed by machine (torch version, CPU model and its
bf16 features or the GPU's name), device, precision, mode (inference or training) and shapes.

    from depth_anything_v2.kernels import tune_kernels
    choice = tune_kernels(model, batch=1, height=518, width=518, precision="bf16")   # applied to model
    choice = tune_kernels(model, 1, 518, 518, "bf16", forced={"attention": "sdpa"})  # force one, time the rest

The cache is `$DA2_KERNEL_CACHE` or `~/.cache/depth_anything_v2/kernels.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .configs import PATCH_SIZE
from .dinov2_layers import LINEAR_IMPLS, Attention, Linear

KERNEL_OPTIONS = {"attention": ("sdpa", "explicit"), "head_layout": ("channels_last", "nchw"), "linear": LINEAR_IMPLS}
MODES = ("inference", "training")
CACHE_ENV = "DA2_KERNEL_CACHE"
# Timed calls per candidate after one warm-up call; the median is compared.
TIMED_CALLS = 5


@dataclasses.dataclass(frozen=True)
class KernelChoice:
    """One value per KERNEL_OPTIONS key, and how it was reached: 'measured', 'cached', 'forced' or 'fixed' (not
    a choice for this device, precision and mode) per key."""

    attention: str
    head_layout: str
    linear: str = "aten"
    source: dict[str, str] = dataclasses.field(default_factory=dict, compare=False)

    def describe(self) -> str:
        return ", ".join(f"{key}={getattr(self, key)} ({self.source.get(key, '?')})" for key in KERNEL_OPTIONS)

    def apply(self, model: nn.Module) -> None:
        """Set these kernels on `model` (`apply_kernels`)."""
        apply_kernels(model, **{key: getattr(self, key) for key in KERNEL_OPTIONS})


def parse_kernels(text: str) -> dict[str, str]:
    """'auto' -> {} (time everything); 'attention=sdpa,head_layout=nchw' -> the forced values (others timed).

    Raises ValueError naming the bad item and the choices."""
    if text.strip() in ("", "auto"):
        return {}
    forced = {}
    for item in text.split(","):
        key, _, value = item.strip().partition("=")
        if key not in KERNEL_OPTIONS or value not in KERNEL_OPTIONS[key]:
            options = "; ".join(f"{k}={'|'.join(v)}" for k, v in KERNEL_OPTIONS.items())
            raise ValueError(f"--kernels {text!r}: {item.strip()!r} is not a choice; use 'auto' or {options}")
        forced[key] = value
    return forced


def apply_kernels(model: nn.Module, attention: str, head_layout: str, linear: str = "aten") -> None:
    """Set every backbone attention module's and linear layer's implementation and the DPT head's layout (the
    camera encoder's attention over its 10 tokens keeps its own)."""
    for module in model.pretrained.modules():
        if isinstance(module, Attention):
            module.impl = attention
        elif isinstance(module, Linear):
            module.impl = linear
    model.depth_head.channels_last = head_layout == "channels_last"


def is_a_choice(option: str, device: torch.device, precision: str, mode: str) -> bool:
    """Whether `option` can change anything here: the linear kernel only for fp32 inference on the CPU (oneDNN's
    op has no autograd formula, and under autocast both candidates are the same bf16 matmul)."""
    return option != "linear" or (device.type == "cpu" and precision == "fp32" and mode == "inference")


def machine_key(device: torch.device) -> str:
    """What kernel speed depends on besides the model: torch version and the CPU (model, cores, bf16 features)
    or the GPU."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = f"mps {platform.machine()}"
    else:
        features = [n for n in ("avx512_bf16", "amx_tile") if getattr(torch.cpu, f"_is_{n}_supported", bool)()]
        name = f"{cpu_model()} x{torch.get_num_threads()} threads [{' '.join(features) or 'no native bf16'}]"
    return f"torch {torch.__version__} | {name}"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_path() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "depth_anything_v2" / "kernels.json")


def _read_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # absent or unreadable (a half-written file cannot happen: writes are atomic): time again


def _write_cache(path: Path, key: str, entry: dict) -> None:
    """Add one entry, re-reading the file first so that entries of concurrent processes survive."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cache = _read_cache(path)
    cache[key] = entry
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kernels-")
    with os.fdopen(fd, "w") as f:
        json.dump(cache, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _median_seconds(fn: Callable[[], object], device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    times = []
    for _ in range(TIMED_CALLS):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def autocast_context(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16/fp16 autocast on `device`, or a no-op for fp32 (the precision of a run, as the scripts set it)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _run(module_call: Callable[[], torch.Tensor], params: list[nn.Parameter], device, precision, training: bool):
    """One call as the model runs it: under inference mode, or forward and backward (gradients then dropped)."""
    if not training:
        with torch.inference_mode(), autocast_context(device, precision):
            return module_call()
    with autocast_context(device, precision):
        out = module_call()
    out.float().square().mean().backward()
    for p in params:
        p.grad = None


def _timers(model: nn.Module, batch: int, height: int, width: int, precision: str, training: bool) -> dict:
    """Per option, a function timing one candidate value on the component it affects, with random inputs of the
    model's shapes: the first backbone attention on (batch, tokens, C), the head on four token maps, the first
    feed-forward linear of the first block on (batch, tokens, C)."""
    device = next(model.parameters()).device
    patch_h, patch_w = height // PATCH_SIZE, width // PATCH_SIZE
    tokens = 1 + patch_h * patch_w  # class token + patches
    dim = model.pretrained.embed_dim
    generator = torch.Generator(device=device).manual_seed(0)
    attention = next(m for m in model.pretrained.modules() if isinstance(m, Attention))
    x = torch.randn(batch, tokens, dim, device=device, generator=generator, requires_grad=training)
    features = [
        (
            torch.randn(batch, patch_h * patch_w, dim, device=device, generator=generator, requires_grad=training),
            torch.randn(batch, dim, device=device, generator=generator, requires_grad=training),
        )
        for _ in range(4)
    ]
    head = model.depth_head
    linear = next(m for m in model.pretrained.blocks[0].mlp.modules() if isinstance(m, Linear))
    params = [p for p in model.parameters() if p.requires_grad]

    def timed(module: nn.Module, attribute: str, value: object, call: Callable[[], torch.Tensor]) -> float:
        """Median seconds of `call` with module.<attribute> set to value, and the module in the mode timed (the
        head leaves out its fp32 island in training)."""
        previous, was_training = getattr(module, attribute), module.training
        setattr(module, attribute, value)
        module.train(training)
        try:
            return _median_seconds(lambda: _run(call, params, device, precision, training), device)
        finally:
            setattr(module, attribute, previous)
            module.train(was_training)

    return {
        "attention": lambda impl: timed(attention, "impl", impl, lambda: attention(x)),
        "head_layout": lambda layout: timed(
            head, "channels_last", layout == "channels_last", lambda: head(features, patch_h, patch_w)
        ),
        "linear": lambda impl: timed(linear, "impl", impl, lambda: linear(x)),
    }


def kernel_key(model: nn.Module, device: torch.device, batch: int, height: int, width: int, precision: str,
               mode: str) -> str:  # fmt: skip
    """The cache key of one (machine, device, precision, mode, model widths, input shape)."""
    heads = model.pretrained.blocks[0].attn.num_heads
    widths = f"dim {model.pretrained.embed_dim} heads {heads} features {model.config['features']}"
    if mode == "training" and not any(p.requires_grad for p in model.pretrained.parameters()):
        mode = "training, frozen backbone"
    if mode.startswith("training") and precision != "fp32" and model.depth_head.fp32_island_in_training:
        mode += ", fp32 head island"
    return f"{machine_key(device)} | {device.type} {precision} {mode} | {widths} | {batch}x{height}x{width}"


def tune_kernels(
    model: nn.Module,
    batch: int,
    height: int,
    width: int,
    precision: str,
    mode: str = "inference",
    forced: dict[str, str] | None = None,
    path: Path | None = None,
) -> KernelChoice:
    """Choose and apply the fastest kernels for inputs of (batch, 3, height, width) pixels, a multiple of 14.

    Forced values are applied as given; the others come from the cache or are timed (a few calls per candidate
    on one attention module and on the head) and stored. Training mode times forward and backward with the
    model's parameters as they are (frozen ones get no gradient); gradients are dropped after each call.

    Args:
        precision: 'fp32' | 'bf16' | 'fp16' (autocast dtype of the run).
        mode: 'inference' | 'training'.
        forced: from `parse_kernels`.
        path: cache file (default `cache_path()`).

    Returns:
        The choice, already applied to `model`.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    if height % PATCH_SIZE or width % PATCH_SIZE:
        raise ValueError(f"tune_kernels: {height} x {width} px is not a multiple of {PATCH_SIZE}")
    forced = forced or {}
    device = next(model.parameters()).device
    path = path or cache_path()
    key = kernel_key(model, device, batch, height, width, precision, mode)
    cached = _read_cache(path).get(key, {})
    values, source, seconds = {}, {}, {}
    timers = None
    for option, candidates in KERNEL_OPTIONS.items():
        if option in forced:
            values[option], source[option] = forced[option], "forced"
        elif not is_a_choice(option, device, precision, mode):
            values[option], source[option] = candidates[0], "fixed"
        elif cached.get("choice", {}).get(option) in candidates:
            values[option], source[option] = cached["choice"][option], "cached"
        else:
            timers = timers or _timers(model, batch, height, width, precision, mode == "training")
            seconds[option] = {value: timers[option](value) for value in candidates}
            values[option], source[option] = min(seconds[option], key=seconds[option].get), "measured"
    if seconds:
        choice = {**cached.get("choice", {}), **{k: values[k] for k in seconds}}
        timings = {**cached.get("seconds", {}), **seconds}
        _write_cache(path, key, {"choice": choice, "seconds": timings, "date": time.strftime("%Y-%m-%dT%H:%M:%S")})
    apply_kernels(model, **values)
    return KernelChoice(**values, source=source)
