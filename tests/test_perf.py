"""The speed-ups keep results: bf16 depth vs fp32, explicit vs SDPA attention, activation checkpointing; and the
measurement helpers of util/perf.py and benchmarks/bench.py."""

import argparse
import copy
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.dinov2_layers import Attention, attention
from util import perf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench  # noqa: E402


@pytest.fixture(scope="module")
def varied_model(vits_weights):
    """Official-format vits (metric, camera-aware) whose final conv is rescaled so that its logits have zero mean
    and a standard deviation of 0.25 over a calibration input: depth then spans about 4-16 m instead of the almost
    constant output of the fixture weights, which would hide bf16 errors. (Scaling the logits up amplifies the
    backbone's bf16 rounding in proportion: 0.42 % median error at 0.25.)"""
    torch.manual_seed(0)
    model = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True).eval()
    model.load_state_dict(vits_weights, strict=False)
    final = model.depth_head.scratch.output_conv2[2]
    captured = {}
    hook = final.register_forward_hook(lambda m, i, o: captured.update(logits=o))
    with torch.no_grad():
        final.weight.normal_()
        final.bias.zero_()
        model(torch.randn(1, 3, 98, 84))
        logits = captured["logits"]
        final.weight.mul_(0.25 / logits.std())
        final.bias.fill_(-(0.25 * logits.mean() / logits.std()).item())
    hook.remove()
    return model


def _median_relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs() / b.abs()).median().item()


def test_bf16_depth_within_half_percent_of_fp32(varied_model):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 98, 84)
    K = torch.tensor([[90.0, 0, 41.5], [0, 90.0, 48.5], [0, 0, 1]]).expand(2, 3, 3)
    with torch.no_grad():
        depth32 = varied_model(x, K)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            depth16 = varied_model(x, K)
    assert depth16.dtype == torch.float32
    assert (depth32.std() / depth32.mean()).item() > 0.1, "the test model's depth should vary over the image"
    assert _median_relative(depth16, depth32) < 0.005


def test_infer_image_under_bf16_autocast(varied_model):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)
    K = np.array([[100.0, 0, 49.5], [0, 100.0, 39.5], [0, 0, 1]])
    depth32 = varied_model.infer_image(image, input_size=70, intrinsics=K)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        depth16 = varied_model.infer_image(image, input_size=70, intrinsics=K)
    assert depth16.dtype == np.float32 and depth16.shape == (80, 100)
    assert _median_relative(torch.from_numpy(depth16), torch.from_numpy(depth32)) < 0.005


def test_compile_frozen_keeps_bf16_depth(varied_model):
    """A real compile (about 30 s here): the frozen graph gives the eager bf16 depth, within 0.5 % of fp32."""
    torch.manual_seed(1)
    x = torch.randn(1, 3, 70, 84)
    K = torch.tensor([[90.0, 0, 41.5], [0, 90.0, 34.5], [0, 0, 1]])[None]
    with torch.inference_mode():
        depth32 = varied_model(x, K)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            eager16 = varied_model(x, K)
    model = copy.deepcopy(varied_model)
    assert perf.compile_frozen(model) is model and model._compiled_call_impl is not None
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        compiled16 = model(x, K)
    assert compiled16.dtype == torch.float32
    assert _median_relative(compiled16, eager16) < 0.002
    assert _median_relative(compiled16, depth32) < 0.005


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_explicit_attention_matches_sdpa(monkeypatch, dtype):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 2, 50, 16, dtype=dtype)
    # 6 KiB of scores per chunk: 50 queries x 50 keys x 2 heads x 2 images -> several chunks, uneven last one.
    monkeypatch.setattr(attention, "EXPLICIT_CHUNK_BYTES", 6 * 1024)
    expected = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float())
    out = attention.explicit_attention(q, k, v)
    assert out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol)


def test_attention_auto_uses_explicit_path_for_bf16_on_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(attention, "explicit_attention", lambda *a: calls.append(a[0].dtype) or a[2])
    layer = Attention(32, num_heads=4).eval()
    x = torch.randn(1, 10, 32)
    layer(x)
    assert calls == []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    assert calls == [torch.bfloat16]
    with pytest.raises(ValueError, match="attention impl"):
        Attention(32, impl="flash")


@pytest.mark.parametrize("frozen, inject", [(False, 0), (True, 6)])
def test_grad_checkpointing_gives_equal_gradients(vits_weights, frozen, inject):
    torch.manual_seed(0)
    model = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True, cam_token_inject_layer=inject)
    model.load_state_dict(vits_weights, strict=False)
    model.pretrained.requires_grad_(not frozen)
    model.pretrained.mask_token.requires_grad_(False)
    for p in model.cam_encoder.parameters():  # non-zero camera adapters, so the camera path carries gradient
        p.data.add_(torch.randn_like(p) * 1e-2)
    model.train()
    x = torch.randn(1, 3, 70, 84)
    K = torch.tensor([[[80.0, 0, 41.5], [0, 80.0, 34.5], [0, 0, 1]]])

    def grads(enabled: bool) -> dict:
        model.zero_grad(set_to_none=True)
        model.set_grad_checkpointing(enabled)
        model(x, K).log().square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert model.pretrained.grad_checkpointing
    assert any(n.startswith("pretrained.blocks.") for n in plain) == (not frozen)
    assert any(n.startswith("cam_encoder.adapters.11") for n in plain)
    assert plain.keys() == checkpointed.keys()
    torch.testing.assert_close(checkpointed, plain, rtol=1e-5, atol=1e-7)


def test_tune_allocator_runs():
    applied = perf.tune_allocator()
    assert applied == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


def test_peak_rss_follows_allocations():
    if not Path("/proc/self/status").exists():
        pytest.skip("no /proc")
    code = (
        "from util.perf import peak_rss_bytes; before = peak_rss_bytes(); block = b'x' * (256 << 20); "
        "print(before, peak_rss_bytes())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    before, after = map(int, out.split())
    assert before > 0 and after - before >= 240 << 20


def test_time_runs_calls_warmup_plus_repeats():
    calls = []
    times = perf.time_runs(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and len(times) == 3 and all(t >= 0 for t in times)


def test_count_flops_adds_the_attention_that_the_counter_misses():
    layer = Attention(32, num_heads=4, qkv_bias=True).eval()
    x = torch.randn(2, 10, 32)
    linear = 2 * 2 * 10 * 32 * (3 * 32 + 32)
    attn = 4 * 2 * 4 * 10 * 10 * 8
    assert perf.count_flops(lambda: layer(x)) == linear + attn
    layer.impl = "explicit"  # plain matmuls, which the counter sees itself
    assert perf.count_flops(lambda: layer(x)) == linear + attn


def test_count_flops_of_a_backward_counts_attention_like_explicit_matmuls():
    layer = Attention(32, num_heads=4, qkv_bias=True)
    x = torch.randn(2, 10, 32, requires_grad=True)
    sdpa = perf.count_flops(lambda: layer(x).sum().backward())
    layer.impl = "explicit"
    assert perf.count_flops(lambda: layer(x).sum().backward()) == sdpa
    assert sdpa == 3 * perf.count_flops(lambda: layer(x))


def test_has_fast_bf16_follows_the_cpu_flags():
    assert not perf.has_fast_bf16(torch.device("meta"))
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = set(cpuinfo.read_text().split())
        assert perf.has_fast_bf16(torch.device("cpu")) == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_matmul_gflops_is_positive():
    assert perf.matmul_gflops(torch.float32, n=64, warmup=1, repeats=2) > 0


def _args(**kw) -> argparse.Namespace:
    args = bench.get_args_parser().parse_args([])
    return argparse.Namespace(**{**vars(args), **kw})


def test_plan_covers_the_issue_rows():
    cases = bench.plan(_args(quick=False, encoders=["vits", "vitl"]))
    kinds = {c["kind"] for c in cases}
    assert kinds == {"matmul", "forward", "train", "loader"}
    forward = [c for c in cases if c["kind"] == "forward"]
    assert {(c["encoder"], c["precision"]) for c in forward} >= {("vitl", "fp32"), ("vitl", "bf16")}
    assert all(c["size"] == 518 for c in cases)
    train = {(c["name"], c["precision"]) for c in cases if c["kind"] == "train"}
    assert {("student", "bf16"), ("student+teacher(bf16)", "fp32"), ("unfrozen+ckpt", "bf16")} <= train
    assert {("student+teacher(cached)", "bf16"), ("student, torch.compile", "bf16")} <= train
    assert ("student+teacher(bf16, compiled)", "fp32") in train
    no_compile = bench.plan(_args(quick=False, no_compile=True, encoders=["vits"]))
    assert not any(c.get("compile") or c.get("compile_teacher") for c in no_compile)
    assert any(c.get("compile") for c in forward) and any(c.get("head_nchw") for c in forward)
    assert bench.run_settings(True)["size"] % 14 == 0


def _fake_results() -> list[dict]:
    fwd = {"kind": "forward", "encoder": "vits", "flops": 1e11, "peak_rss_gb": 1.0, "cpu_share": 1.0}
    train = {"kind": "train", "inject": 0, "cpu_share": 0.5, "flops": 6e11, "gflops": 1.0}
    return [
        {"kind": "matmul", "dtype": "float32", "gflops": 200.0},
        {"kind": "matmul", "dtype": "bfloat16", "gflops": 1000.0},
        {**fwd, "precision": "fp32", "seconds": 0.5, "gflops": 180.0},
        {**fwd, "precision": "bf16", "seconds": 0.2, "gflops": 500.0},
        {**fwd, "precision": "fp32", "seconds": 0.8, "gflops": 125.0, "allocator": "default"},
        {**fwd, "precision": "bf16", "seconds": 0.18, "gflops": 640.0, "compile": True, "compile_seconds": 40.0},
        {**train, "name": "student", "precision": "fp32", "seconds": 3.0, "peak_rss_gb": 2.0, "gflops": 200.0},
        {**train, "name": "student", "precision": "bf16", "seconds": 1.0, "peak_rss_gb": 1.5, "gflops": 600.0},
        {**train, "name": "student+teacher(bf16)", "precision": "fp32", "seconds": 3.3, "peak_rss_gb": 2.2},
        {**train, "name": "student+teacher(bf16)", "precision": "bf16", "seconds": 1.3, "peak_rss_gb": 1.6},
        {**train, "name": "student+teacher(cached)", "precision": "bf16", "seconds": 1.02, "peak_rss_gb": 1.5},
        {**train, "name": "student+teacher(bf16, compiled)", "precision": "fp32", "seconds": 3.2, "peak_rss_gb": 2.2,
         "compile_teacher": True, "compile_seconds": 41.0},  # fmt: skip
        {"kind": "loader", "size": 518, "workers": 2, "samples_per_s": 60.0, "samples_per_s_per_worker": 30.0},
        {"kind": "matmul", "dtype": "float32", "gflops": 150.0},  # a busier moment: the best one counts
    ]


def test_summarize_and_markdown():
    assert bench.matmul_ceiling(_fake_results()) == {"float32": 200.0, "bfloat16": 1000.0}
    checks = {c["target"]: c for c in bench.summarize(_fake_results())}
    assert checks["vits fp32 forward / matmul ceiling"]["value"] == pytest.approx(0.9)
    assert checks["vits fp32 forward / matmul ceiling"]["met"]
    assert not checks["vits bf16 forward / matmul ceiling"]["met"]  # 0.5 < 0.6
    assert checks["vits bf16 forward, torch.compile / matmul ceiling"]["met"]  # 0.64
    assert checks["distillation / student step time (bf16 teacher, fp32 student)"]["met"]  # 1.1
    assert not checks["distillation / student step time (bf16 teacher, bf16 student)"]["met"]  # 1.3
    assert checks["distillation / student step time (cached teacher, bf16 student)"]["met"]  # 1.02
    assert checks["distillation / student step time (bf16, compiled teacher, fp32 student)"]["value"] == 3.2 / 3.0
    assert checks["train step fp32 / bf16 time (student)"]["met"]  # 3.0
    assert not checks["train step fp32 / bf16 time (student+teacher(bf16))"]["met"]  # 2.54
    assert not checks["loader samples/s per worker (2 workers, 518 px)"]["met"]
    meta = {
        "command": "x",
        "date": "d",
        "cpu": "c",
        "torch": "t",
        "threads": 2,
        "allocator": "a",
        "load_average_before": (0.1, 0.2, 0.3),
        **bench.run_settings(False),
    }
    table = bench.markdown({"meta": meta, "results": _fake_results(), "targets": list(checks.values())})
    assert "| vits | fp32 | glibc default allocator | 0.800 |" in table
    assert "| student (inject 0) | bf16 | 1.000 | 1.00x | 3.00x | 600 | 600 | 0.60 | 1.50 |  | 0.50 |" in table
    assert "| vits bf16 forward / matmul ceiling | 0.500 | >= 0.6 | NO |" in table
    assert "| vits | bf16 | torch.compile, frozen weights (compiled in 40 s) | 0.180 |" in table
    assert "| student+teacher(bf16, compiled) (inject 0, compiled in 41 s) | fp32 | 3.200 | 1.07x |" in table


def test_main_runs_cases_in_fresh_processes_and_writes_reports(tmp_path, monkeypatch):
    cases = [{"kind": "matmul", "dtype": dt, "n": 32, "threads": 1} for dt in ("float32", "bfloat16")]
    monkeypatch.setattr(bench, "plan", lambda args: cases)
    report = bench.main(_args(quick=True, out=str(tmp_path / "r.json")))
    assert [r["gflops"] > 0 for r in report["results"]] == [True, True]
    assert (tmp_path / "r.json").exists() and "Matmul ceiling" in (tmp_path / "r.md").read_text()
