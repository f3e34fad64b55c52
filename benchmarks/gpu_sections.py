"""The sections of the GPU check (benchmarks/gpu_check.py, whose docstring says what each measures): the shared
seeded model and inputs (`Check`), and one function per section, which appends its rows to the section as it
measures them."""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import math
import statistics
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpu_report import attempt, first_line, full_fp32, relative_error  # noqa: E402
from model_flops import count_model_flops  # noqa: E402
from perf_tools import matmul_gflops, peak_rss_bytes, time_runs  # noqa: E402

from depth_anything_v2.configs import PATCH_SIZE  # noqa: E402
from depth_anything_v2.dpt import DepthAnythingV2  # noqa: E402
from depth_anything_v2.kernels import apply_kernels, autocast_context, tune_kernels  # noqa: E402
from util.dist import DistInfo  # noqa: E402
from util.distill import FrozenTeacher  # noqa: E402
from util.engine import finite_on_every_rank, forward_backward  # noqa: E402
from util.optim import build_optimizer, set_lr  # noqa: E402
from util.precision import compile_frozen, teacher_uses_bf16  # noqa: E402

# Seconds each section may take (the first to use the model also builds it on the CPU); their sum is over --budget,
# so a slow early section shortens the last ones (compiling, the least certain; the CUDA graphs, last because a failed
# capture can leave the device unusable) rather than the whole run.
SECTION_BUDGETS = {"ceiling": 20, "attention": 45, "accuracy": 60, "inference": 60, "training": 150, "compiled": 240,
                   "graphs": 60}  # fmt: skip
# (precision, TF32 allowed as torch sets it, limit on ||device - CPU fp32|| / ||CPU fp32||); fp32 with TF32 is shown
# because it is what a user gets, and judged without.
ACCURACY_CASES = (("fp32", False, 1e-4), ("fp32", True, None), ("bf16", True, 1e-2))
BACKENDS = [b for name, b in SDPBackend.__members__.items() if name != "ERROR"]
SETTINGS = {
    "full": {"encoder": "vitl", "size": 518, "batches": [1, 32], "train_batches": [32, 24, 16, 12, 8, 4, 2, 1],
             "warmup": 3, "repeats": 20, "train_warmup": 2, "train_repeats": 5, "matmul_n": 8192, "qkv_batch": 2},
    "smoke": {"encoder": "vits", "size": 56, "batches": [1, 2], "train_batches": [2, 1],
              "warmup": 1, "repeats": 2, "train_warmup": 1, "train_repeats": 2, "matmul_n": 256, "qkv_batch": 1},
}  # fmt: skip
# train.py's defaults for what the step reads.
TRAIN_ARGS = argparse.Namespace(
    precision="bf16", min_depth=0.001, max_depth=20.0, distill_weight=1.0, accum_iter=1, lr=5e-6, weight_decay=0.01
)


class Check:
    """What the sections share: device, settings, the seeded model (built once on the CPU) and its device copy."""

    def __init__(self, args: argparse.Namespace, peak: float | None) -> None:
        self.args, self.peak = args, peak
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.cuda = self.device.type == "cuda"
        self.s = SETTINGS["smoke" if args.smoke else "full"]
        self.size = self.s["size"]
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        self.kernel_cache = self.tmp / "kernels.json"  # fresh: the choices are timed on this machine, in this run
        self.ceiling_tflops: float | None = None
        self.compiled = False  # whether device_model() runs compiled (for batch 1 at least)
        self.flops_error = ""

    @functools.cache
    def cpu_model(self) -> DepthAnythingV2:
        """The seeded model, its last projection rescaled: random weights give a depth that varies by about 1 %
        over the image (the projection's output spread is about 0.005 before the sigmoid), which would hide a
        kernel's error; rescaled, that output has mean 0 and spread 1 (depth about 2-18 m) on a test input."""
        torch.manual_seed(self.args.seed)
        model = DepthAnythingV2(self.s["encoder"], max_depth=20.0, use_camera_intrinsics=True).eval()
        projection = model.depth_head.scratch.output_conv2[2]
        seen = []
        hook = projection.register_forward_hook(lambda module, args, out: seen.append(out))
        with torch.inference_mode():
            model(*self.inputs(1, torch.device("cpu"), min(self.size, 112)))
        hook.remove()
        with torch.no_grad():
            projection.bias.sub_(seen[0].mean()).div_(seen[0].std())
            projection.weight.div_(seen[0].std())
        return model

    @functools.cache
    def device_model(self) -> DepthAnythingV2:
        return copy.deepcopy(self.cpu_model()).to(self.device)

    def inputs(self, batch: int, device: torch.device | None = None, size: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """(B, 3, S, S) random normalised images (S: the check's size), (B, 3, 3) K (focal 0.8 S px, centred),
        (B,) True."""
        S = size or self.size
        f = 0.8 * S
        image = torch.randn(batch, 3, S, S, generator=torch.Generator().manual_seed(self.args.seed + batch))
        K = torch.tensor([[f, 0, (S - 1) / 2], [0, f, (S - 1) / 2], [0, 0, 1]]).expand(batch, 3, 3).contiguous()
        return tuple(t.to(device or self.device) for t in (image, K, torch.ones(batch, dtype=torch.bool)))

    def forward(self, model: nn.Module, batch: int, precision: str = "bf16") -> Callable[[], Tensor]:
        """One inference call on a fixed batch, as run.py makes it."""
        x, K, has = self.inputs(batch)

        def run() -> Tensor:
            with torch.inference_mode(), autocast_context(self.device, precision):
                return model(x, K, has)

        return run

    @functools.cache
    def flops_per_image(self) -> int | None:
        """FLOPs of one image's forward of the eager model (attention counted as explicit matmuls), in fp32, which
        has bf16's FLOPs: the counter's decompositions trip over autocast in the camera injection. None, with the
        reason in `flops_error`, if the count fails: the times are still worth having."""
        try:
            return count_model_flops(self.device_model(), self.forward(self.device_model(), 1, "fp32"))
        except Exception as err:  # noqa: BLE001
            self.flops_error = first_line(err)
            return None

    def timed(self, fn: Callable[[], object], batch: int, **row: object) -> dict:
        """A measured inference row: median, fastest and slowest ms per image, images/s, TFLOP/s, share of peak."""
        times = time_runs(fn, self.s["warmup"], self.s["repeats"])
        seconds = statistics.median(times)
        flops = self.flops_per_image()
        tflops = flops * batch / seconds / 1e12 if flops else None
        return {**row, "batch": batch, "status": "measured", "ms_per_image": 1e3 * seconds / batch,
                "ms_fastest": 1e3 * min(times) / batch, "ms_slowest": 1e3 * max(times) / batch,
                "images_per_s": batch / seconds, "tflops": tflops,
                "of_peak": tflops / self.peak if tflops and self.peak else None,
                **({} if tflops else {"flop_count": self.flops_error})}  # fmt: skip


def ceiling(check: Check, section: dict) -> None:
    n = check.s["matmul_n"]
    check.ceiling_tflops = matmul_gflops(torch.bfloat16, n) / 1e3
    of_peak = check.ceiling_tflops / check.peak if check.peak else None
    section["rows"].append({"matmul": f"{n}^3 bf16, random", "status": "measured", "tflops": check.ceiling_tflops,
                            "of_peak": of_peak})  # fmt: skip


def nonfinite(t: Tensor) -> int:
    return int((~torch.isfinite(t)).sum())


def per_backend(rows: list[dict], row: dict, fn: Callable[[], dict]) -> None:
    """A row of fn's measures under each SDPA backend alone; 'skipped' where the backend is not available here."""
    for backend in BACKENDS:
        try:
            with sdpa_kernel([backend]):
                rows.append({**row, "backend": backend.name, "status": "measured", **fn()})
        except RuntimeError as err:
            rows.append(
                {**row, "backend": backend.name, "status": "skipped", "reason": f"not available: {first_line(err)}"}
            )


def attention(check: Check, section: dict) -> None:
    model = check.device_model()
    heads = model.pretrained.blocks[0].attn.num_heads
    head_dim, tokens = model.pretrained.embed_dim // heads, 1 + (check.size // PATCH_SIZE) ** 2
    generator = torch.Generator(device=check.device).manual_seed(check.args.seed)
    shape = (check.s["qkv_batch"], heads, tokens, head_dim)
    for scale in (1.0, 8.0):  # 8: logits 64x larger, a near one-hot softmax
        q, k, v = (torch.randn(shape, device=check.device, generator=generator).bfloat16() for _ in range(3))
        q, k = q * scale, k * scale
        ref = torch.softmax(q.double() @ k.double().transpose(-2, -1) * head_dim**-0.5, -1) @ v.double()

        def forward_backward_qkv() -> dict:
            leaves = [t.clone().requires_grad_() for t in (q, k, v)]
            out = F.scaled_dot_product_attention(*leaves)
            out.float().square().mean().backward()
            bad_grads = sum(nonfinite(t.grad) for t in leaves)
            return {
                "nonfinite_out": nonfinite(out),
                "nonfinite_grad": bad_grads,
                "error_vs_fp64": relative_error(out, ref),
            }

        per_backend(section["rows"], {"check": "q k v, forward and backward", "tokens": tokens, "scale": scale},
                    forward_backward_qkv)  # fmt: skip
    apply_kernels(model, "sdpa", "channels_last")
    run, fp32 = check.forward(model, 1), check.forward(model, 1, "fp32")
    reference = fp32()

    def model_forward() -> dict:
        depth = run()
        return {"nonfinite_out": nonfinite(depth), "error_vs_fp32": relative_error(depth, reference)}

    per_backend(section["rows"], {"check": "model forward, bf16", "tokens": tokens}, model_forward)


def accuracy(check: Check, section: dict) -> None:
    cpu, model = check.cpu_model(), check.device_model()
    for m in (cpu, model):
        apply_kernels(m, "sdpa", "channels_last")
    x, K, has = check.inputs(1, torch.device("cpu"))
    with torch.inference_mode():
        reference = cpu(x, K, has)
    for precision, tf32, limit in ACCURACY_CASES:
        with torch.inference_mode(), nullcontext() if tf32 else full_fp32(), autocast_context(check.device, precision):
            depth = model(*(t.to(check.device) for t in (x, K, has))).float().cpu()
        ratio, error = (depth - reference).abs() / reference.abs(), relative_error(depth, reference)
        section["rows"].append({
            "device": check.device.type, "precision": precision, "tf32": tf32 and check.cuda, "against": "CPU fp32",
            "status": "measured", "relative_error": error, "median_relative": float(ratio.median()),
            "max_relative": float(ratio.max()), "limit": limit, "met": None if limit is None else error <= limit,
            "reference_depth_m": f"{float(reference.min()):.3g}-{float(reference.max()):.3g}",
        })  # fmt: skip


def inference(check: Check, section: dict) -> None:
    model = check.device_model()
    for batch in check.s["batches"]:
        for impl in ("explicit", "sdpa"):

            def eager_row(impl: str = impl) -> dict:
                forced = {"attention": impl}
                choice = tune_kernels(
                    model, batch, check.size, check.size, "bf16", "inference", forced, check.kernel_cache
                )
                return check.timed(check.forward(model, batch), batch, kernels=choice.describe())

            attempt(section["rows"], eager_row, mode="eager", batch=batch)


def training(check: Check, section: dict) -> None:
    device, size, rows = check.device, check.size, section["rows"]
    student = copy.deepcopy(check.cpu_model()).to(device).train()
    student.pretrained.requires_grad_(False)  # --freeze-dinov2, as train.py sets it
    student.pretrained.mask_token.requires_grad_(False)
    path = check.tmp / "teacher.pth"
    torch.save({"model": check.cpu_model().state_dict(), "model_config": check.cpu_model().config}, path)
    teacher = FrozenTeacher(str(path), device, bf16=teacher_uses_bf16("auto", "bf16", device))
    optimizer = build_optimizer(student, TRAIN_ARGS)
    set_lr(optimizer, TRAIN_ARGS.lr)
    params = [p for p in student.parameters() if p.requires_grad]
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=device)

    def make_batch(batch: int) -> dict:
        image, K, has = check.inputs(batch)
        depth = torch.rand(batch, size, size, generator=torch.Generator().manual_seed(batch)).to(device) * 9 + 1
        valid = torch.ones(batch, size, size, dtype=torch.bool, device=device)
        return {"image": image, "intrinsics": K, "has_intrinsics": has, "depth": depth, "depth_valid": valid,
                "image_valid": valid}  # fmt: skip

    def step(batch: dict) -> None:  # train_one_epoch's step with one micro-batch and no clipping (the defaults)
        loss, *_ = forward_backward(student, teacher, batch, TRAIN_ARGS, info, None, True, len(batch["image"]))
        grad_norm = torch.nn.utils.clip_grad_norm_(params, math.inf)
        if finite_on_every_rank(loss, grad_norm, info):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch_size in check.s["train_batches"]:
        batch, fits = make_batch(batch_size), True
        try:
            choice = tune_kernels(student, batch_size, size, size, "bf16", "training", path=check.kernel_cache)
            tune_kernels(teacher.model, batch_size, size, size, "bf16", "inference", path=check.kernel_cache)
            step(batch)
        except torch.OutOfMemoryError:
            fits = False
        rows.append({"mode": "try", "batch": batch_size, "status": "measured", "fits": fits})
        if fits:
            break
        batch = None
        optimizer.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()
    else:
        raise RuntimeError(f"no batch of {check.s['train_batches']} fits in the device's memory")
    if check.cuda:
        torch.cuda.reset_peak_memory_stats()
    times = time_runs(lambda: step(batch), check.s["train_warmup"], check.s["train_repeats"])
    peak_gib = (torch.cuda.max_memory_allocated() if check.cuda else peak_rss_bytes()) / 2**30
    seconds = statistics.median(times)
    memory = "allocated on the GPU" if check.cuda else "process peak RSS"
    row = {"mode": "step", "batch": batch_size, "status": "measured", "seconds_per_step": seconds,
           "images_per_s": batch_size / seconds, "peak_memory_gib": peak_gib, "memory": memory,
           "kernels": choice.describe()}  # fmt: skip
    rows.append(row)  # before the count, so that a count that fails leaves the time
    one = make_batch(1)
    flops = count_model_flops(nn.ModuleList([student, teacher.model]), lambda: step(one)) * batch_size
    tflops = flops / seconds / 1e12
    row.update(tflop_per_step=flops / 1e12, tflops=tflops, mfu=tflops / check.peak if check.peak else None,
               of_ceiling=tflops / check.ceiling_tflops if check.ceiling_tflops else None)  # fmt: skip


def compiled(check: Check, section: dict) -> None:
    model = check.device_model()
    check.flops_per_image()  # counted on the eager model, before it is compiled
    # A static graph per batch size: after a second shape torch.compile would otherwise make the batch dynamic.
    torch._dynamo.config.automatic_dynamic_shapes = False
    compile_frozen(model)
    for batch in check.s["batches"]:

        def compiled_row(batch: int = batch) -> dict:
            choice = tune_kernels(model, batch, check.size, check.size, "bf16", "inference", path=check.kernel_cache)
            run = check.forward(model, batch)
            compile_seconds = time_runs(run, 0, 1)[0]
            check.compiled |= batch == 1
            return {**check.timed(run, batch), "compile_s": compile_seconds, "kernels": choice.describe()}

        attempt(section["rows"], compiled_row, mode="compiled", batch=batch)


def graph_row(check: Check, model: nn.Module) -> dict:
    """Capture one bf16 forward of one image (autocast entered inside the capture, so no cached cast outlives it) as
    a CUDA graph and time its replays; its output, poisoned with NaN before a replay, must come back as a direct
    call's."""
    tune_kernels(model, 1, check.size, check.size, "bf16", "inference", path=check.kernel_cache)  # cached: applied
    run = check.forward(model, 1)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()
    direct = run()
    with torch.inference_mode():
        out.fill_(math.nan)
    graph.replay()
    return {**check.timed(graph.replay, 1), "graph_vs_direct": relative_error(out, direct)}


def graphs(check: Check, section: dict) -> None:
    """One image replayed as a CUDA graph: a fresh eager copy of the model, and the compiled model if it was."""
    eager = copy.deepcopy(check.cpu_model()).to(check.device)
    attempt(section["rows"], lambda: graph_row(check, eager), mode="eager + CUDA graph", batch=1)
    if check.compiled:
        attempt(section["rows"], lambda: graph_row(check, check.device_model()), mode="compiled + CUDA graph", batch=1)
    else:
        section["rows"].append({"mode": "compiled + CUDA graph", "batch": 1, "status": "skipped",
                                "reason": "the compiled section did not compile batch 1"})  # fmt: skip


SECTIONS = {"ceiling": ceiling, "attention": attention, "accuracy": accuracy, "inference": inference,
            "training": training, "compiled": compiled, "graphs": graphs}  # fmt: skip
