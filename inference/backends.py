"""Runners: one call from a batch of network inputs to depth, on PyTorch, ONNX Runtime or OpenVINO.

    runner = TorchRunner(model, torch.device("cpu"), "fp32")
    depth = runner(images, K)  # (B, 3, H, W) float32 normalised, (B, 3, 3) float32 -> (B, H, W) float32

K is in pixels of the network input; a row of zeros is an image without a camera (camera models then use their
learned null camera); models without a camera encoder ignore K. The ONNX backends run graphs of
`inference.onnx_export`: exported from a checkpoint on first use for each input size and cached, or an .onnx file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from dataset.io import DataError
from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.kernels import KernelChoice, tune_kernels
from inference.onnx_export import METADATA_KEY, cached_export
from util.precision import autocast_context, has_fast_bf16

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "openvino")


@dataclass(frozen=True)
class ModelInfo:
    """What a caller needs to know of a model.

    Attributes:
        name: the encoder, or the .onnx file.
        max_depth: metric range in metres, None for a relative model (its output is disparity).
        camera: whether the model takes intrinsics.
    """

    name: str
    max_depth: float | None
    camera: bool

    @classmethod
    def of(cls, model: DepthAnythingV2) -> ModelInfo:
        return cls(model.encoder, model.max_depth, model.cam_encoder is not None)


class Runner(Protocol):
    info: ModelInfo
    fixed_size: tuple[int, int] | None  # (H, W) every input must have (a fixed-size .onnx), None: any

    def __call__(self, images: np.ndarray, K: np.ndarray) -> np.ndarray: ...


def resolve_precision(backend: str, precision: str, device: torch.device) -> str:
    """The precision a backend runs in for --precision auto | fp32 | bf16 | fp16 (DataError if it cannot).

    auto: fp32 on torch and ONNX Runtime; on OpenVINO bf16 where the CPU runs bf16 natively (AVX512-BF16 or AMX,
    `has_fast_bf16`), fp32 elsewhere. Which one OpenVINO uses is logged.
    """
    if backend == "torch":
        if precision == "fp16" and device.type != "cuda":
            raise DataError(f"--precision fp16 needs CUDA, the device is {device.type}; use bf16")
        return "fp32" if precision == "auto" else precision
    if device.type != "cpu":
        raise DataError(f"--backend {backend} runs on the CPU; drop --device {device.type} (or use --backend torch)")
    if backend == "onnxruntime":
        if precision not in ("auto", "fp32"):
            raise DataError(f"--backend onnxruntime runs fp32 only, not {precision}; use --backend openvino for bf16")
        return "fp32"
    if precision == "fp16":
        raise DataError("--precision fp16 is for CUDA; OpenVINO on the CPU runs bf16 or fp32")
    native = has_fast_bf16(device)
    chosen = ("bf16" if native else "fp32") if precision == "auto" else precision
    why = "the CPU runs bf16 natively" if native else "this CPU has no native bf16 (AVX512-BF16 or AMX)"
    logger.info("OpenVINO inference precision: %s (%s, --precision %s)", chosen, why, precision)
    return chosen


class TorchRunner:
    """A DepthAnythingV2 on its device, under autocast for bf16 / fp16 (the model may be compiled in place).

    kernels: None keeps the model's kernels; a dict from `depth_anything_v2.kernels.parse_kernels` ({} = all
    timed) chooses them on the first batch of each input shape (`tune_kernels`, cached on disk) and logs it.
    """

    fixed_size = None

    def __init__(
        self, model: DepthAnythingV2, device: torch.device, precision: str, kernels: dict[str, str] | None = None
    ) -> None:
        self.model, self.device, self.precision = model, device, precision
        self.info = ModelInfo.of(model)
        self.kernels = kernels
        self.tuned: dict[tuple[int, ...], KernelChoice] = {}
        self.applied: tuple[int, ...] | None = None  # the input shape whose kernels the model runs now

    def __call__(self, images: np.ndarray, K: np.ndarray) -> np.ndarray:
        if self.kernels is not None and images.shape != self.applied:
            if images.shape not in self.tuned:
                B, _, H, W = images.shape
                self.tuned[images.shape] = tune_kernels(self.model, B, H, W, self.precision, "inference", self.kernels)
                logger.info("kernels for %d x %d x %d inputs, %s: %s", B, H, W, self.precision,
                            self.tuned[images.shape].describe())  # fmt: skip
            choice = self.tuned[images.shape]
            choice.apply(self.model)
            self.applied = images.shape
        x = torch.from_numpy(images).to(self.device)
        K = torch.from_numpy(K).to(self.device)
        with torch.inference_mode(), autocast_context(self.device, self.precision):
            depth = self.model(x, K, K[:, 2, 2] > 0.5)  # through __call__: runs a compiled forward too
        return depth.float().cpu().numpy()


class _OrtSession:
    def __init__(self, path: Path, precision: str) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feeds)[0]


class _OpenVinoSession:
    """The graph compiled for each batch size it meets: OpenVINO plans memory and picks kernels for static shapes
    only, and runs a graph with a dynamic batch dimension slower (benchmarks/backend_results.md)."""

    def __init__(self, path: Path, precision: str) -> None:
        import openvino as ov

        self.core = ov.Core()
        self.hint = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        self.model = self.core.read_model(str(path))  # parsed once; each batch size compiles a reshaped copy
        self.inputs = [port.get_any_name() for port in self.model.inputs]
        self.compiled: dict[int, object] = {}

    def _compile(self, feeds: dict[str, np.ndarray]) -> object:
        model = self.model.clone()
        model.reshape({name: list(array.shape) for name, array in feeds.items()})
        return self.core.compile_model(model, "CPU", self.hint)

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        batch = len(next(iter(feeds.values())))
        if batch not in self.compiled:
            self.compiled[batch] = self._compile(feeds)
        compiled = self.compiled[batch]
        return compiled(feeds)[compiled.output(0)]


SESSIONS = {"onnxruntime": _OrtSession, "openvino": _OpenVinoSession}


class OnnxRunner:
    """ONNX graphs of one model on ONNX Runtime or OpenVINO (CPU), one graph per network input size.

    Args:
        backend: 'onnxruntime' or 'openvino'.
        precision: 'fp32' or 'bf16' (OpenVINO's inference precision), from `resolve_precision`.
        info: the model's kind.
        graph_for: (H, W) -> the .onnx file for that input size.
        fixed_size: (H, W) of a graph that takes one size only, None if `graph_for` serves any size.
    """

    def __init__(
        self,
        backend: str,
        precision: str,
        info: ModelInfo,
        graph_for: Callable[[int, int], Path],
        fixed_size: tuple[int, int] | None = None,
    ) -> None:
        self.session_type, self.precision, self.info = SESSIONS[backend], precision, info
        self.graph_for, self.fixed_size = graph_for, fixed_size
        self.sessions: dict[tuple[int, int], object] = {}

    def __call__(self, images: np.ndarray, K: np.ndarray) -> np.ndarray:
        size = images.shape[2:]
        if size not in self.sessions:
            self.sessions[size] = self.session_type(self.graph_for(*size), self.precision)
        session = self.sessions[size]
        feeds = {session.inputs[0]: images}
        if len(session.inputs) > 1:
            feeds[session.inputs[1]] = K
        # Graphs of other exporters may give (B, 1, H, W).
        return np.asarray(session(feeds), dtype=np.float32).reshape(len(images), *size)


class CheckpointGraphs:
    """(H, W) -> the cached ONNX export of a checkpoint's model for that size (`cached_export`).

    The model loaded at start serves the first export and is then released (the ONNX session holds the weights);
    a later new input size reloads it with `rebuild`.
    """

    def __init__(
        self, checkpoint: Path, model: DepthAnythingV2, rebuild: Callable[[], DepthAnythingV2], folder: Path
    ) -> None:
        self.checkpoint, self.config, self.folder = checkpoint, dict(model.config), folder
        self.model, self.rebuild = model, rebuild

    def _take_model(self) -> DepthAnythingV2:
        model, self.model = self.model, None
        return model if model is not None else self.rebuild()

    def __call__(self, height: int, width: int) -> Path:
        path = cached_export(self.checkpoint, self.config, height, width, self.folder, self._take_model)
        self.model = None
        return path


def describe_onnx(path: Path, max_depth: float | None) -> tuple[ModelInfo, tuple[int, int] | None]:
    """The kind and the fixed input size (H, W; None if dynamic) of an .onnx file.

    Graphs of export.py carry their settings; for other graphs a second input means intrinsics, and the model is
    metric only with `max_depth` (the --max-depth flag).
    """
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError, ValueError or OSError depending on the damage
        raise DataError(f"{path}: not a readable ONNX model ({type(err).__name__}: {err})") from None
    meta = json.loads({p.key: p.value for p in graph.metadata_props}.get(METADATA_KEY, "{}"))
    if meta and max_depth is not None and meta["max_depth"] != max_depth:
        kind = "relative" if meta["max_depth"] is None else f"metric with max depth {meta['max_depth']:g} m"
        raise DataError(f"{path}: --max-depth {max_depth:g} was given, but this export is {kind}; drop --max-depth")
    inputs = [i for i in graph.graph.input if i.name not in {t.name for t in graph.graph.initializer}]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] not in (3, None):
        raise DataError(f"{path}: the first input must be an image (B, 3, H, W), got shape {dims}")
    info = ModelInfo(path.name, meta.get("max_depth", max_depth), meta.get("camera", len(inputs) > 1))
    return info, (dims[2], dims[3]) if dims[2] and dims[3] else None
