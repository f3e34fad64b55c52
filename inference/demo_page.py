"""What the web demo (app.py) does behind its page: pick and load a model, predict one upload (`inference.uploads`),
write its files, and re-run it with the focal length halved and doubled. Nothing here knows about Gradio.
"""

from __future__ import annotations

import shutil
import tempfile
from argparse import Namespace
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from depth_anything_v2.configs import OFFICIAL_METRIC_RANGES
from inference.args import load_runner as build_runner
from inference.camera_inputs import focal_sweep
from inference.depth_files import (
    colour_bar,
    colour_depth,
    finite_range,
    median_depth,
    write_grayscale_png,
    write_point_clouds,
)
from inference.predict import network_input, resize_depth
from inference.raw_depth import MAX_VALUE, PNG16_SUFFIX, SCALE_SUFFIX, write_raw_depth
from inference.uploads import Camera, DemoInputError, check_input_size, read_photo
from util.dist import resolve_device

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
# Metric range of the official metric checkpoints, by file name (checkpoints/README.md).
_OFFICIAL_RANGES = {f"metric_{key}": depth for key, depth in OFFICIAL_METRIC_RANGES.items()}


@dataclass
class Runner:
    """A loaded model: infer(bgr uint8, input short side px, K or None) -> (H, W) depth, and what it is."""

    infer: Callable[[np.ndarray, int, np.ndarray | None], np.ndarray]
    metric: bool
    has_camera: bool
    description: str


@dataclass
class Prediction:
    """Everything the page shows for one photo (RGB pictures, files, and the raw depth for the readout)."""

    image: np.ndarray
    depth_picture: np.ndarray
    colour_bar: np.ndarray
    depth: np.ndarray
    metric: bool
    files: list[Path]
    preview_ply: Path | None
    summary: str
    notes: list[str]


@dataclass
class Sweep:
    """The focal-length runs: (picture, caption) per run in one colour range, table rows, and a summary."""

    pictures: list[tuple[np.ndarray, str]]
    rows: list[list[object]]
    summary: str
    notes: list[str]


def find_checkpoints(folder: str | Path) -> dict[str, Path]:
    """{path relative to `folder`: path} of every checkpoint file under `folder`, sorted by name.

    .onnx files are left out: the ONNX backends keep their cached exports there (an .onnx goes in --load-from).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    return {str(p.relative_to(folder)): p for p in files}


def official_range(path: str | Path) -> float | None:
    """Metric range in metres of an official metric checkpoint recognised by its file name, else None."""
    return next((depth for key, depth in _OFFICIAL_RANGES.items() if key in Path(path).name), None)


def load_runner(
    path: str | Path, backend: str, device: str, encoder: str | None, max_depth: float | None, input_size: int
) -> Runner:
    """Build the model of `path` on `backend` with the runners of run.py (`inference.args.load_runner`).

    Args:
        path: our checkpoint (it carries its config), an official one, or an .onnx of export.py (ONNX backends).
        backend: one of BACKENDS; onnxruntime and openvino export a checkpoint once per input size (cached).
        device: auto | cpu | cuda | mps (ONNX backends: cpu).
        encoder, max_depth: for official checkpoints (max_depth default: by file name, see `official_range`).
        input_size: the network short side the page starts with (checked here as run.py checks it).
    """
    flags = Namespace(
        load_from=str(path),
        encoder=encoder,
        max_depth=max_depth or official_range(path),
        input_size=input_size,
        batch_size=1,
        compile=False,
        kernels="auto",
        backend=backend,
        device=device,
        precision="auto",
        export_cache=None,
    )
    runner = build_runner(flags)

    def infer(image: np.ndarray, size: int, K: np.ndarray | None) -> np.ndarray:
        x, K_net = network_input(image, size, K, runner.fixed_size)
        return resize_depth(runner(x[None], K_net[None])[0], *image.shape[:2])

    info = runner.info
    kind = f"metric (up to {info.max_depth:g} m)" if info.max_depth is not None else "relative (disparity)"
    camera = "with a camera encoder" if info.camera else "without a camera encoder"
    where = resolve_device(device) if backend == "torch" else "cpu"
    return Runner(infer, info.max_depth is not None, info.camera, f"{info.name} {kind}, {camera}; {backend} on {where}")


class DepthDemo:
    """One model at a time, loaded on first use and kept; request outputs in a private temporary folder.

    Args:
        checkpoints: {name shown on the page: path}.
        loader: path -> Runner (`load_runner` with the backend and model flags bound).
        max_size: long side in pixels above which uploads are resized.
        preview_points: about how many points the 3D viewer gets.
        keep: how many past requests keep their output folder.
    """

    def __init__(
        self,
        checkpoints: dict[str, Path],
        loader: Callable[[Path], Runner],
        max_size: int = 2048,
        preview_points: int = 200_000,
        keep: int = 16,
    ) -> None:
        self.checkpoints, self.loader = checkpoints, loader
        self.max_size, self.preview_points = max_size, preview_points
        self._loaded: tuple[str, Runner] | None = None
        self._root = tempfile.TemporaryDirectory(prefix="depth_demo_")
        self._requests: deque[Path] = deque(maxlen=keep)

    def runner(self, name: str) -> Runner:
        """The model of checkpoint `name`, loaded now unless it is the one already loaded."""
        if self._loaded is None or self._loaded[0] != name:
            if name not in self.checkpoints:
                raise DemoInputError(f"unknown checkpoint {name!r}; choose one of {', '.join(self.checkpoints)}")
            self._loaded = None  # frees the previous model before the next one is built
            self._loaded = (name, self.loader(self.checkpoints[name]))
        return self._loaded[1]

    def _request_folder(self) -> Path:
        if len(self._requests) == self._requests.maxlen:
            shutil.rmtree(self._requests[0], ignore_errors=True)
        self._requests.append(Path(tempfile.mkdtemp(dir=self._root.name)))
        return self._requests[-1]

    def predict(self, name: str, path: str | Path | None, camera: Camera, input_size: int, ply: bool) -> Prediction:
        """Depth of one upload with its pictures and files (and a point cloud if asked for and possible)."""
        runner = self.runner(name)
        input_size = check_input_size(input_size)
        photo = read_photo(path, camera, self.max_size)
        notes = photo.notes + camera_notes(runner, photo.K)
        depth = runner.infer(photo.bgr, input_size, photo.K)
        base = self._request_folder() / photo.name
        write_grayscale_png(f"{base}.gray.png", depth, runner.metric)
        write_raw_depth(base, depth, runner.metric, numpy=True, png16=True)
        files = [Path(f"{base}{suffix}") for suffix in (".gray.png", PNG16_SUFFIX, ".npy")]
        if runner.metric:
            saturated = int((depth > MAX_VALUE / 1000).sum())
            if saturated:
                notes.append(f"{saturated} pixels lie beyond 65.535 m: the 16-bit PNG stores them as 65535 mm.")
        else:
            files.insert(2, Path(f"{base}{SCALE_SUFFIX}"))
        preview = None
        if ply:
            problem = point_cloud_problem(runner, photo.K)
            if problem:
                notes.append(problem)
            else:
                files.append(Path(f"{base}.ply"))
                preview = Path(f"{base}.preview.ply")
                write_point_clouds(files[-1], preview, depth, photo.K, photo.bgr, self.preview_points)
        lo, hi = finite_range(depth)
        values = f"depth {lo:.3g} to {hi:.3g} m, median {median_depth(depth):.3g} m"
        if not runner.metric:
            values = f"relative disparity (no unit) {lo:.3g} to {hi:.3g}, median {median_depth(depth):.3g}"
        summary = f"{runner.description}; {photo.camera_text}. {depth.shape[1]} x {depth.shape[0]} px, {values}."
        return Prediction(
            image=photo.bgr[..., ::-1],
            depth_picture=colour_depth(depth, runner.metric),
            colour_bar=colour_bar(lo, hi, runner.metric),
            depth=depth,
            metric=runner.metric,
            files=files,
            preview_ply=preview,
            summary=summary,
            notes=notes,
        )

    def camera_sweep(self, name: str, path: str | Path | None, camera: Camera, input_size: int) -> Sweep:
        """The same photo with the focal length halved, as given and doubled: depth maps and their medians."""
        runner = self.runner(name)
        input_size = check_input_size(input_size)
        photo = read_photo(path, camera, self.max_size)
        height, width = photo.bgr.shape[:2]
        notes = list(photo.notes)
        if photo.K is None:
            notes.append(f"Camera unknown: the runs start from a guessed focal length of {max(width, height)} px.")
        if not runner.has_camera:
            notes.append("This model has no camera encoder: K does not reach it, so the three maps are the same.")
        runs = [
            (factor, K, runner.infer(photo.bgr, input_size, K)) for factor, K in focal_sweep(photo.K, width, height)
        ]
        ranges = np.array([finite_range(depth) for _, _, depth in runs])
        lo, hi = float(ranges[:, 0].min()), float(ranges[:, 1].max())
        unit = " m" if runner.metric else ""
        medians = [median_depth(depth) for _, _, depth in runs]
        pictures, rows = [], []
        for (factor, K, depth), median in zip(runs, medians):
            label = f"focal x {factor:g}"
            caption = f"{label}: fx {K[0, 0]:.0f} px, median {median:.3g}{unit}"
            pictures.append((colour_depth(depth, runner.metric, lo, hi), caption))
            rows.append([label, round(float(K[0, 0]), 1), round(median, 4)])
        halved, doubled = (m / medians[1] if medians[1] > 0 else float("nan") for m in (medians[0], medians[2]))
        summary = (
            f"Halving the focal length multiplied the median {'depth' if runner.metric else 'disparity'} by "
            f"{halved:.3g}, doubling it by {doubled:.3g}. A camera-aware metric model scales depth with the focal "
            "length (x0.5 and x2, as a pinhole camera does); a model without a camera gives x1."
        )
        return Sweep(pictures, rows, summary, notes)


def camera_notes(runner: Runner, K: np.ndarray | None) -> list[str]:
    """What the model does with the camera given (or not)."""
    if runner.has_camera and K is None:
        return ["Camera unknown: the model used its learned 'no camera' path; give K for metric scale."]
    if not runner.has_camera and K is not None:
        return ["This model has no camera encoder: K is used for the point cloud only."]
    return []


def point_cloud_problem(runner: Runner, K: np.ndarray | None) -> str | None:
    """Why no point cloud can be made, or None."""
    if not runner.metric:
        return (
            "No point cloud: this is a relative model (disparity without a unit, not metres). Load a metric "
            "checkpoint for a point cloud."
        )
    if K is None:
        return "No point cloud: it needs the camera. Enter fx fy cx cy, a field of view, or use the EXIF data."
    return None


def depth_readout(depth: np.ndarray | None, x: int, y: int, metric: bool) -> str:
    """'depth at (x, y): value' for the pixel (x, y) of the last depth map."""
    if depth is None:
        return "compute a depth map first"
    if not (0 <= y < depth.shape[0] and 0 <= x < depth.shape[1]):
        return f"({x}, {y}) is outside the {depth.shape[1]} x {depth.shape[0]} px depth map"
    value = float(depth[y, x])
    return f"depth at ({x}, {y}): {value:.3f} m" if metric else f"relative disparity at ({x}, {y}): {value:.4g}"
