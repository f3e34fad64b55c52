"""depth_anything_v2/kernels.py: kernel choices timed once per machine and shape, cached, and forced choices
honoured; the scripts' --kernels flag."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import ROOT, SUBPROCESS_ENV, train_args, write_run_data

from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2 import kernels as K
from depth_anything_v2.dinov2_layers import Attention, Linear


def _model(camera: bool = False) -> DepthAnythingV2:
    torch.manual_seed(0)
    return DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=camera).eval()


def _impls(model: DepthAnythingV2) -> set[str]:
    return {m.impl for m in model.pretrained.modules() if isinstance(m, Attention)}


def _fake_timers(seconds: dict[str, dict[str, float]], calls: list):
    """A stand-in for kernels._timers: the given seconds per option and value, each call recorded."""

    def timers(*args, **kwargs):
        def timer(option):
            return lambda value: calls.append((option, value)) or seconds[option][value]

        return {option: timer(option) for option in seconds}

    return timers


SLOW_SDPA = {
    "attention": {"sdpa": 2.0, "explicit": 1.0},
    "head_layout": {"channels_last": 1.0, "nchw": 3.0},
    "linear": {"aten": 2.0, "onednn": 1.0},
}


def test_the_fastest_candidate_is_applied_and_cached(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(K, "_timers", _fake_timers(SLOW_SDPA, calls))
    model, cache = _model(), tmp_path / "kernels.json"
    choice = K.tune_kernels(model, 1, 28, 42, "bf16", path=cache)
    assert (choice.attention, choice.head_layout) == ("explicit", "channels_last")
    assert choice.source == {"attention": "measured", "head_layout": "measured", "linear": "fixed"}
    assert _impls(model) == {"explicit"} and model.depth_head.channels_last
    assert len(calls) == 4
    entry = json.loads(cache.read_text())[K.kernel_key(model, torch.device("cpu"), 1, 28, 42, "bf16", "inference")]
    assert entry["choice"] == {"attention": "explicit", "head_layout": "channels_last"}
    assert entry["seconds"]["attention"] == SLOW_SDPA["attention"]

    # Second use on this machine and shape: read back, nothing timed, applied to a fresh model.
    calls.clear()
    fresh = _model()
    again = K.tune_kernels(fresh, 1, 28, 42, "bf16", path=cache)
    assert calls == [] and again == choice
    assert again.source == {"attention": "cached", "head_layout": "cached", "linear": "fixed"}
    assert _impls(fresh) == {"explicit"}


def test_a_new_shape_precision_or_mode_is_timed_again_and_entries_accumulate(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(K, "_timers", _fake_timers(SLOW_SDPA, calls))
    model, cache = _model(), tmp_path / "kernels.json"
    runs = [(1, 28, 42, "bf16", "inference"), (2, 28, 42, "bf16", "inference"), (1, 28, 28, "bf16", "inference"),
            (1, 28, 42, "fp32", "inference"), (1, 28, 42, "bf16", "training")]  # fmt: skip
    for batch, h, w, precision, mode in runs:
        K.tune_kernels(model, batch, h, w, precision, mode, path=cache)
    # The linear kernel is a choice for fp32 inference only: 2 more timings there.
    assert len(calls) == 4 * len(runs) + 2
    assert len(json.loads(cache.read_text())) == len(runs)
    model.pretrained.requires_grad_(False)  # a frozen backbone trains with other costs: its own entry
    K.tune_kernels(model, 1, 28, 42, "bf16", "training", path=cache)
    assert len(json.loads(cache.read_text())) == len(runs) + 1


def test_forced_values_are_applied_untimed_and_the_rest_is_timed(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(K, "_timers", _fake_timers(SLOW_SDPA, calls))
    model, cache = _model(), tmp_path / "kernels.json"
    choice = K.tune_kernels(model, 1, 28, 28, "bf16", forced={"attention": "sdpa"}, path=cache)
    assert choice.attention == "sdpa" and choice.source["attention"] == "forced"
    assert _impls(model) == {"sdpa"}
    assert {option for option, _ in calls} == {"head_layout"}
    everything = K.parse_kernels("attention=sdpa,head_layout=nchw,linear=onednn")
    calls.clear()
    choice = K.tune_kernels(model, 4, 56, 56, "fp32", forced=everything, path=cache)
    assert calls == [] and not model.depth_head.channels_last and choice.source["head_layout"] == "forced"
    assert {m.impl for m in model.pretrained.modules() if isinstance(m, Linear)} == {"onednn"}
    # A forced value does not replace the cached measurement: 'auto' later still gets the measured winner.
    assert K.tune_kernels(model, 1, 28, 28, "bf16", path=cache).attention == "explicit"


def test_real_timing_picks_a_candidate_of_each_option_and_keeps_outputs(tmp_path):
    model = _model(camera=True)
    x = torch.randn(1, 3, 28, 42)
    with torch.inference_mode():
        before = model(x)
    choice = K.tune_kernels(model, 1, 28, 42, "fp32", path=tmp_path / "k.json")
    assert choice.attention in K.KERNEL_OPTIONS["attention"]
    assert choice.head_layout in K.KERNEL_OPTIONS["head_layout"]
    assert choice.linear in K.KERNEL_OPTIONS["linear"] and choice.source["linear"] == "measured"
    with torch.inference_mode():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    # Training-mode timing runs backward passes but leaves no gradient behind.
    model.train()
    K.tune_kernels(model, 2, 28, 28, "bf16", "training", path=tmp_path / "k.json")
    assert all(p.grad is None for p in model.parameters())
    # The camera encoder's own attention over 10 tokens is not the backbone's and keeps its implementation.
    assert {m.impl for m in model.cam_encoder.modules() if isinstance(m, Attention)} == {"auto"}


def test_an_unreadable_cache_is_timed_again_and_rewritten(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(K, "_timers", _fake_timers(SLOW_SDPA, calls))
    cache = tmp_path / "kernels.json"
    cache.write_text("{not json")
    K.tune_kernels(_model(), 1, 28, 28, "fp32", path=cache)
    assert len(calls) == 6 and len(json.loads(cache.read_text())) == 1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="'attention=fast' is not a choice; use 'auto' or attention=sdpa|explicit"):
        K.parse_kernels("attention=fast")
    with pytest.raises(ValueError, match="'layout=nchw' is not a choice"):
        K.parse_kernels("attention=sdpa,layout=nchw")
    assert K.parse_kernels("auto") == {} and K.parse_kernels("head_layout=nchw") == {"head_layout": "nchw"}
    with pytest.raises(ValueError, match="not a multiple of 14"):
        K.tune_kernels(_model(), 1, 30, 28, "fp32")
    with pytest.raises(ValueError, match="mode 'eval'"):
        K.tune_kernels(_model(), 1, 28, 28, "fp32", "eval")


def test_the_machine_key_names_torch_and_the_cpu():
    key = K.machine_key(torch.device("cpu"))
    assert key.startswith(f"torch {torch.__version__} | ") and K.cpu_model() in key
    assert f"x{torch.get_num_threads()} threads" in key


def test_run_py_honours_forced_kernels_and_refuses_bad_ones(tmp_path):
    checkpoint = tmp_path / "model.pth"
    torch.save({"model": _model().state_dict(), "model_config": _model().config}, checkpoint)
    cv2.imwrite(str(tmp_path / "a.png"), np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    env = {**SUBPROCESS_ENV, K.CACHE_ENV: str(tmp_path / "kernels.json")}
    base = [sys.executable, "run.py", "--load-from", str(checkpoint), "--img-path", str(tmp_path / "a.png"),
            "--outdir", str(tmp_path / "out"), "--input-size", "28"]  # fmt: skip
    forced = subprocess.run(base + ["--kernels", "attention=explicit,head_layout=nchw"], cwd=ROOT, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert "attention=explicit (forced), head_layout=nchw (forced)" in forced.stderr + forced.stdout
    tuned = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True)
    assert tuned.returncode == 0 and "(measured)" in tuned.stderr + tuned.stdout
    assert len(json.loads((tmp_path / "kernels.json").read_text())) == 1
    bad_run = base[:-4] + ["--outdir", str(tmp_path / "bad"), "--input-size", "28", "--kernels", "attention=fast"]
    bad = subprocess.run(bad_run, cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "'attention=fast' is not a choice" in bad.stderr
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def test_train_py_honours_forced_kernels_and_refuses_bad_ones(tmp_path):
    data = write_run_data(tmp_path, n_train=2, n_val=1, size=(70, 70), seed=0)
    env = {**SUBPROCESS_ENV, K.CACHE_ENV: str(tmp_path / "kernels.json")}
    flags = train_args(data, tmp_path / "run", "--max-steps", "1", "--kernels", "attention=explicit")
    done = subprocess.run([sys.executable, "train.py", *flags], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "student kernels for 70 x 70 px batches of 2: attention=explicit (forced), head_layout=" in log
    assert "head_layout=channels_last (measured)" in log or "head_layout=nchw (measured)" in log
    flags = train_args(data, tmp_path / "run2", "--max-steps", "1", "--kernels", "head=nchw")
    bad = subprocess.run([sys.executable, "train.py", *flags], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "--kernels 'head=nchw': 'head=nchw' is not a choice" in bad.stderr
    assert not (tmp_path / "run2").exists()


def _ran_onednn(fn) -> bool:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return any("_linear_pointwise" in e.key for e in prof.key_averages())


def test_the_onednn_linear_matches_aten_and_steps_aside_where_it_cannot_run():
    torch.manual_seed(0)
    linear, x = Linear(48, 96), torch.randn(2, 5, 48)
    with torch.inference_mode():
        expected = linear(x)
    linear.impl = "onednn"
    with torch.inference_mode():
        assert _ran_onednn(lambda: linear(x))
        torch.testing.assert_close(linear(x), expected, rtol=1e-5, atol=1e-6)
    # Autograd, autocast and export need ATen's op: the same module then runs F.linear.
    assert not _ran_onednn(lambda: linear(x.requires_grad_()).sum().backward()) and linear.weight.grad is not None
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert not _ran_onednn(lambda: linear(x)) and linear(x).dtype == torch.bfloat16
    graph = torch.export.export(linear.eval(), (x.detach(),)).graph_module.code
    assert "linear" in graph and "mkldnn" not in graph


def test_the_forced_onednn_linear_keeps_the_model_output(tmp_path):
    model = _model(camera=True)
    x = torch.randn(2, 3, 28, 42)
    with torch.inference_mode():
        before = model(x)
    K.tune_kernels(model, 2, 28, 42, "fp32", forced=K.parse_kernels("linear=onednn"), path=tmp_path / "k.json")
    with torch.inference_mode():
        assert _ran_onednn(lambda: model(x))
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
