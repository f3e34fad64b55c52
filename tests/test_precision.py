"""Precision and compile helpers keep results: bf16 depth vs fp32, frozen compile, allocator, bf16 detection."""

import copy
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from depth_anything_v2 import DepthAnythingV2
from util import precision


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
    assert precision.compile_frozen(model) is model and model._compiled_call_impl is not None
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        compiled16 = model(x, K)
    assert compiled16.dtype == torch.float32
    assert _median_relative(compiled16, eager16) < 0.002
    assert _median_relative(compiled16, depth32) < 0.005


def test_tune_allocator_runs():
    applied = precision.tune_allocator()
    assert applied == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


def test_has_fast_bf16_follows_the_cpu_flags():
    assert not precision.has_fast_bf16(torch.device("meta"))
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = set(cpuinfo.read_text().split())
        assert precision.has_fast_bf16(torch.device("cpu")) == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_teacher_precision(monkeypatch):
    cpu = torch.device("cpu")
    assert precision.teacher_uses_bf16("bf16", "fp32", cpu) and not precision.teacher_uses_bf16("fp32", "bf16", cpu)
    assert precision.teacher_uses_bf16("auto", "bf16", cpu)
    for native in (True, False):
        monkeypatch.setattr(precision, "has_fast_bf16", lambda device, native=native: native)
        assert precision.teacher_uses_bf16("auto", "fp32", cpu) == native


def _head_conv_dtype(model: DepthAnythingV2, x: torch.Tensor, K: torch.Tensor) -> tuple[torch.dtype, torch.Tensor]:
    """(dtype the head's full-resolution 3x3 convolution runs in under bf16 autocast, depth)."""
    seen = []
    hook = model.depth_head.scratch.output_conv2[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        depth = model(x, K)
    hook.remove()
    return seen[0].dtype, depth


def test_the_fp32_island_is_left_out_in_training_only(varied_model):
    """Training under bf16 runs the head's last convolutions in bf16 unless fp32_island_in_training; evaluation and
    inference keep them in fp32 either way, with the same depth."""
    model = copy.deepcopy(varied_model)
    torch.manual_seed(2)
    x = torch.randn(1, 3, 56, 70)
    K = torch.tensor([[60.0, 0, 34.5], [0, 60.0, 27.5], [0, 0, 1]])[None]
    dtype, depth_eval = _head_conv_dtype(model.eval(), x, K)
    assert dtype == torch.float32
    dtype, depth_train = _head_conv_dtype(model.train(), x, K)
    assert dtype == torch.bfloat16 and depth_train.dtype == torch.float32
    model.depth_head.fp32_island_in_training = True
    dtype, depth_island = _head_conv_dtype(model, x, K)
    assert dtype == torch.float32 and not torch.equal(depth_island, depth_train)
    assert torch.equal(_head_conv_dtype(model.eval(), x, K)[1], depth_eval)


def test_train_py_switch_keeps_the_island(tmp_path):
    import train
    from util.dist import DistInfo

    flags = ["--encoder", "vits", "--dataset", str(tmp_path), "--max-depth", "20"]
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    for extra, expected in (([], False), (["--fp32-head-island"], True)):
        args = train.get_args_parser().parse_args(flags + extra)
        assert train.build_model(args, info, None).depth_head.fp32_island_in_training is expected
