"""export.py and inference/onnx_export.py on a random-weight camera-aware vits: the graph's inputs, outputs and
settings, position embeddings fixed at export, parity with PyTorch on ONNX Runtime (fp32) and OpenVINO (fp32, bf16)
for a dynamic batch that mixes cameras and the null camera, and the inputs export.py refuses."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest
import torch

from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.geometry import canonical_intrinsics
from export import get_args_parser, main
from inference.onnx_export import METADATA_KEY, compare_with_torch, fixed_position_embeddings
from util.checkpoint import save_checkpoint
from util.precision import has_fast_bf16

H, W = 56, 84


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """A metric camera-aware checkpoint, its model, and its export for 56 x 84 inputs by export.py."""
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True).eval()
    with torch.no_grad():  # the camera path starts as an identity; random weights make K change the depth
        for p in model.cam_encoder.parameters():
            p.normal_(0.0, 0.1)
    save_checkpoint({"model": model.state_dict(), "model_config": model.config}, folder / "ckpt.pth")
    argv = ["--load-from", str(folder / "ckpt.pth"), "--output", str(folder / "model.onnx"), "--input-size", "56", "84"]
    assert main(get_args_parser().parse_args(argv)) == 0
    return {"ckpt": folder / "ckpt.pth", "model": model, "onnx": folder / "model.onnx"}


def _batch(batch: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Images and K: two focal lengths and, last, a row of zeros (no camera)."""
    images = torch.randn(batch, 3, H, W, generator=torch.Generator().manual_seed(1)).numpy()
    K = np.repeat(canonical_intrinsics(H, W)[None], batch, axis=0).astype(np.float32)
    K[:, :2, :2] *= np.linspace(0.5, 2.0, batch)[:, None, None]
    K[-1] = 0
    return images, K


def _torch_depth(model: DepthAnythingV2, images: np.ndarray, K: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        K_t = torch.from_numpy(K)
        return model(torch.from_numpy(images), K_t, K_t[:, 2, 2] > 0.5).numpy()


def _median_relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.median(np.abs(a - b) / np.abs(b)))


def test_graph_inputs_outputs_and_settings(exported):
    graph = onnx.load(str(exported["onnx"]))
    shapes = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*graph.graph.input, *graph.graph.output]
    }
    assert shapes == {"image": ["batch", 3, H, W], "intrinsics": ["batch", 3, 3], "depth": ["batch", H, W]}
    meta = json.loads({p.key: p.value for p in graph.metadata_props}[METADATA_KEY])
    assert meta == {"encoder": "vits", "max_depth": 20.0, "camera": True, "height": H, "width": W}
    # Position embeddings are a constant of the graph: no bicubic resize is left in it.
    modes = [a.s for n in graph.graph.node if n.op_type == "Resize" for a in n.attribute if a.name == "mode"]
    assert b"cubic" not in modes and b"linear" in modes  # the head's bilinear resizes remain
    # ...and the model's backbone interpolates them again outside the export.
    backbone = exported["model"].pretrained
    with fixed_position_embeddings(exported["model"], H, W):
        assert "interpolate_pos_encoding" in vars(backbone)
    assert "interpolate_pos_encoding" not in vars(backbone)


def test_onnxruntime_matches_torch_for_any_batch_and_the_null_camera(exported):
    model, path = exported["model"], exported["onnx"]
    assert compare_with_torch(path, model, batch=2) <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        images, K = _batch(batch)
        got = session.run(None, {"image": images, "intrinsics": K})[0]
        expected = _torch_depth(model, images, K)
        assert got.shape == (batch, H, W)
        assert _median_relative(got, expected) <= 1e-4 and np.max(np.abs(got - expected) / expected) <= 1e-3
    # The zero row is the null camera: the depth of the model run without K.
    with torch.inference_mode():
        no_camera = model(torch.from_numpy(images[-1:])).numpy()
    assert _median_relative(got[-1:], no_camera) <= 1e-4
    assert _median_relative(got[0], got[1]) > 1e-3  # and K does reach the graph


@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_openvino_matches_torch(exported, precision):
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(exported["onnx"])), "CPU", {"INFERENCE_PRECISION_HINT": precision}
    )
    images, K = _batch()
    got = compiled({"image": images, "intrinsics": K})[compiled.output(0)]
    error = _median_relative(got, _torch_depth(exported["model"], images, K))
    assert error <= (1e-4 if precision == "f32" else 0.005), error


@pytest.mark.skipif(not has_fast_bf16(torch.device("cpu")), reason="OpenVINO runs bf16 only on CPUs with native bf16")
def test_openvino_bf16_keeps_the_depth_projection_in_fp32(exported):
    """The head's last projection is exported as a product and a channel sum, which OpenVINO leaves in fp32 after
    the graph's last convolution: the depth channel is never rounded to bf16."""
    graph = onnx.load(str(exported["onnx"]))
    assert "ReduceSum" in [n.op_type for n in graph.graph.node[-12:]]
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(exported["onnx"])), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    ops = [(o.get_rt_info()["layerType"].astype(str), o.get_rt_info()["runtimePrecision"].astype(str))
           for o in compiled.get_runtime_model().get_ordered_ops()]  # fmt: skip
    last_conv = max(i for i, (kind, _) in enumerate(ops) if kind == "Convolution")
    assert ops[last_conv][1] == "bf16"
    tail = ops[last_conv + 1 :]
    assert ("Reduce", "f32") in tail and all(precision != "bf16" for _, precision in tail), tail


def test_refused_inputs(exported, tmp_path, capsys):
    page = tmp_path / "page.pth"
    page.write_text("<!DOCTYPE html>\n<html><body>Sign in to download</body></html>\n")
    (tmp_path / "folder.onnx").mkdir()
    out = str(tmp_path / "m.onnx")
    ckpt = str(exported["ckpt"])
    cases = [
        (["--load-from", ckpt, "--output", out, "--input-size", "50"], "multiples of 14 (e.g. 56)"),
        (["--load-from", ckpt, "--output", out, "--input-size", "14", "14", "14"], "takes H or H W, got 3"),
        (["--load-from", ckpt, "--output", str(tmp_path / "m.pt")], "ending in .onnx"),
        (["--load-from", ckpt, "--output", str(tmp_path / "folder.onnx")], "is a folder"),
        (["--load-from", str(page), "--output", out], "not a checkpoint (it starts with '<!DOCTYPE html>'"),
        (["--encoder", "vitg", "--output", out], "depth_anything_v2_vitg.pth is used, but it is not in"),
    ]
    for argv, message in cases:
        assert main(get_args_parser().parse_args(argv)) == 2, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
    assert "huggingface.co/depth-anything/Depth-Anything-V2-Giant" in err
    assert not (tmp_path / "m.onnx").exists()
