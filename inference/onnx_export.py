"""ONNX export of a DepthAnythingV2 for one input size, its check against PyTorch, and the cache of exports.

    path = export_onnx(model, Path("model.onnx"), 518, 686)
    error = compare_with_torch(path, model)  # median relative error of ONNX Runtime against PyTorch, fp32

The graph:
- input `image`: (B, 3, H, W) float32, RGB normalised with the ImageNet mean and std (`preprocess.prepare_image`);
- input `intrinsics` (camera models only): (B, 3, 3) float32 K in pixels of `image` (OpenCV: the centre of pixel
  (u, v) is at (u, v)); a row of zeros is an image without a camera (the model's learned null camera);
- output `depth`: (B, H, W) float32, metres for a metric model, relative disparity otherwise.
B is dynamic; H and W are fixed, because the position embeddings are interpolated for H x W once, at export (the
bicubic interpolation with a scale factor that the backbone does has no exact ONNX equivalent). The model's
settings are stored as JSON in the metadata entry "depth_anything_v2".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from depth_anything_v2 import PATCH_SIZE, DepthAnythingV2
from depth_anything_v2.geometry import canonical_intrinsics
from inference.inputs import check_writable_folder

logger = logging.getLogger(__name__)

METADATA_KEY = "depth_anything_v2"
OPSET = 18
# Part of every cache key: bump it when the exported graph changes, so that older cached exports are not used.
EXPORT_FORMAT = 2


class OnnxGraph(nn.Module):
    """What the ONNX graph computes: image (and intrinsics, for camera models) -> depth; see the module docstring."""

    def __init__(self, model: DepthAnythingV2) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, *intrinsics: Tensor) -> Tensor:
        if not intrinsics:
            return self.model(image)
        K = intrinsics[0]
        return self.model(image, K, K[:, 2, 2] > 0.5)


@contextmanager
def fixed_position_embeddings(model: DepthAnythingV2, height: int, width: int) -> Iterator[None]:
    """Within the block, the backbone uses position embeddings computed once for a height x width input."""
    backbone = model.pretrained
    tokens = torch.zeros(1, 1 + (height // PATCH_SIZE) * (width // PATCH_SIZE), backbone.embed_dim)
    with torch.no_grad():
        pos_embed = backbone.interpolate_pos_encoding(tokens, height, width).detach().clone()
    backbone.interpolate_pos_encoding = lambda x, h, w: pos_embed
    try:
        yield
    finally:
        del backbone.interpolate_pos_encoding


class _ChannelSum(nn.Module):
    """A 1x1 convolution to one channel written as a product and a channel sum: (B, C, H, W) -> (B, 1, H, W)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight = conv.weight.detach().reshape(1, -1, 1, 1)
        self.bias = conv.bias.detach()

    def forward(self, x: Tensor) -> Tensor:
        return (x * self.weight).sum(1, keepdim=True) + self.bias


@contextmanager
def projection_as_channel_sum(model: DepthAnythingV2) -> Iterator[None]:
    """Within the block, the head's last 1x1 convolution (to the depth channel) is a product and a channel sum:
    the same values, but OpenVINO keeps the ops after a graph's last convolution in fp32 under its bf16 hint, so
    the projection, the activation and the scaling run in fp32 there, as in PyTorch (1.0 % largest relative
    difference to fp32 on the test model of tests/test_export.py, against 1.3 % with the convolution)."""
    head = model.depth_head.scratch.output_conv2
    conv = head[2]
    head[2] = _ChannelSum(conv)
    try:
        yield
    finally:
        head[2] = conv


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs a warning per torchvision op it cannot find, its graph passes log a line per initializer
    they merge, and it warns about its own internals: none of it is for the user."""
    logs = [logging.getLogger(name) for name in ("torch.onnx", "onnx_ir", "onnxscript")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(logs, levels):
            log.setLevel(level)


def model_metadata(model: DepthAnythingV2, height: int, width: int) -> dict:
    """The settings stored in the graph: encoder, max_depth (m, None: relative), camera, height and width (px)."""
    camera = model.cam_encoder is not None
    return {"encoder": model.encoder, "max_depth": model.max_depth, "camera": camera, "height": height, "width": width}


def export_onnx(model: DepthAnythingV2, path: Path, height: int, width: int, opset: int = OPSET) -> Path:
    """Write the ONNX graph of `model` (moved to the CPU in fp32, in eval mode) for height x width inputs.

    Args:
        model: the model; its forward is traced with torch.export (needs torch >= 2.5 and onnxscript).
        path: the .onnx file; weights over 2 GB go to a .data file beside it.
        height, width: network input size in pixels, multiples of 14.
        opset: ONNX opset.

    Returns:
        `path`.
    """
    if min(height, width) <= 0 or height % PATCH_SIZE or width % PATCH_SIZE:
        raise ValueError(f"the export size must be positive multiples of {PATCH_SIZE}, got {height} x {width}")
    model = model.cpu().float().eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    # A batch of 2 in the example, so that the exporter cannot specialise the batch dimension to 1.
    args, shapes, names = (torch.zeros(2, 3, height, width),), ({0: batch},), ["image"]
    if model.cam_encoder is not None:
        K = torch.as_tensor(canonical_intrinsics(height, width), dtype=torch.float32).expand(2, 3, 3)
        args, shapes, names = (*args, K.contiguous()), (*shapes, ({0: batch},)), [*names, "intrinsics"]
    with (
        fixed_position_embeddings(model, height, width),
        projection_as_channel_sum(model),
        _quiet_exporter(),
        torch.no_grad(),
    ):
        program = torch.onnx.export(
            OnnxGraph(model), args, input_names=names, output_names=["depth"], dynamic_shapes=shapes,
            opset_version=opset, dynamo=True, verbose=False,
        )  # fmt: skip
        program.model.metadata_props[METADATA_KEY] = json.dumps(model_metadata(model, height, width))
        program.model.doc_string = f"Depth Anything V2 ({model.encoder}) for {height} x {width} inputs; {__doc__}"
        program.save(str(path))
    return path


def compare_with_torch(path: Path, model: DepthAnythingV2, batch: int = 2, seed: int = 0) -> float:
    """Median relative difference of the depth of ONNX Runtime (fp32, CPU) and of `model` on a random batch.

    The images are Gaussian noise; a camera model gets a K with the focal length varied per image, and the last
    image none (a row of zeros, the null camera).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _, _, height, width = session.get_inputs()[0].shape
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, height, width, generator=generator)
    K = torch.as_tensor(canonical_intrinsics(height, width), dtype=torch.float32).repeat(batch, 1, 1)
    K[:, :2, :2] *= torch.linspace(0.6, 1.6, batch)[:, None, None]
    K[-1] = 0
    feeds = {"image": image.numpy()}
    if len(session.get_inputs()) == 2:
        feeds["intrinsics"] = K.numpy()
    with torch.inference_mode():
        expected = OnnxGraph(model.cpu().float().eval())(*map(torch.from_numpy, feeds.values())).numpy()
    got = session.run(None, feeds)[0]
    return float(np.median(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-12)))


def cache_folder(checkpoint: Path | None, cache_dir: str | None) -> Path:
    """Where exports of `checkpoint` are cached: `cache_dir`, else onnx_cache/ beside the checkpoint, or
    $XDG_CACHE_HOME/depth_anything_v2/onnx (~/.cache/...) when the checkpoint's folder cannot be written or
    `checkpoint` is None (a hub model)."""
    if cache_dir is not None:
        check_writable_folder(cache_dir, "--export-cache")
        return Path(cache_dir)
    beside = checkpoint.resolve().parent / "onnx_cache" if checkpoint is not None else None
    if beside is not None and os.access(beside if beside.is_dir() else beside.parent, os.W_OK):
        return beside
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "depth_anything_v2" / "onnx"


def cache_key(checkpoint: Path, config: dict, height: int, width: int) -> str:
    """Identity of one export: the checkpoint's path, size and modification time, the model settings, the input
    size, EXPORT_FORMAT and the torch version (16 hex digits)."""
    stat = checkpoint.stat()
    identity = [str(checkpoint.resolve()), stat.st_size, stat.st_mtime_ns, config, height, width]
    identity += [EXPORT_FORMAT, torch.__version__]
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def cached_export(
    checkpoint: Path, config: dict, height: int, width: int, folder: Path, build: Callable[[], DepthAnythingV2]
) -> Path:
    """The .onnx of the model of `checkpoint` for height x width inputs: from the cache in `folder`, or exported
    into it from `build()` (called only then).

    Entries are written to a temporary folder and renamed, so an interrupted export or two processes exporting at
    once never leave a partial graph.

    Args:
        checkpoint: the checkpoint file the model comes from.
        config: the model's settings (`DepthAnythingV2.config`), part of the cache key.
        height, width: network input size in pixels.
        folder: the cache folder (`cache_folder`).
        build: returns the model loaded from `checkpoint`.
    """
    entry = folder / f"{checkpoint.stem}-{height}x{width}-{cache_key(checkpoint, config, height, width)}"
    if (entry / "model.onnx").is_file():
        logger.info("ONNX graph for %d x %d inputs from the cache: %s", height, width, entry / "model.onnx")
        return entry / "model.onnx"
    folder.mkdir(parents=True, exist_ok=True)
    logger.info("exporting %s to ONNX for %d x %d inputs (once: cached in %s)", checkpoint, height, width, folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=folder))
    try:
        export_onnx(build(), tmp / "model.onnx", height, width)
        tmp.rename(entry)
    except OSError:
        if not (entry / "model.onnx").is_file():  # else another process has just put the same export there
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry / "model.onnx"
