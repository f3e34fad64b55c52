"""Evaluation side of the single-camera experiment: test cameras binned by focal ratio, metrics per bin, real frames.

The focal ratio of an image is r = (fx / short side) / (f_train / short side of the training images): the focal
length in units of the image's short side, which is what the network sees after the resize to its input size,
relative to the one training camera. A camera-less model that reads depth from apparent size alone predicts
depth / r (median scale 1 / r); a camera-aware model predicts the same depth whatever r (median scale 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from dataset.filelist import format_line, read_filelist
from dataset.generic_with_intrinsics import GenericDatasetWithIntrinsics
from dataset.synthetic import write_synthetic_dataset
from depth_anything_v2.loading import build_model_from_checkpoint
from util.metric import MetricAccumulator
from util.precision import autocast_context
from util.zoom import zoom_slope

# (image (B, 3, H, W), K (B, 3, 3) in pixels of the image, has_K (B,) bool) -> depth (B, H, W) in metres.
Predictor = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class FocalBin:
    """A range of focal ratios f_test / f_train (dimensionless), lower edge included."""

    lo: float
    hi: float

    @property
    def label(self) -> str:
        return f"{self.lo:.2f}-{self.hi:.2f}"

    @property
    def centre(self) -> float:
        """Geometric mean of the edges."""
        return math.sqrt(self.lo * self.hi)


@dataclass
class Example:
    """The first image of a split, kept for the example figure: image (H, W, 3) uint8 RGB, depth and pred (H, W)
    in metres, valid (H, W) bool, focal ratio r."""

    image: np.ndarray
    depth: np.ndarray
    pred: np.ndarray
    valid: np.ndarray
    ratio: float


def hfov_for_ratio(ratio: float, train_hfov: float) -> float:
    """Horizontal field of view (degrees) of a camera whose focal length is `ratio` times the training camera's
    (same image size), the training camera having `train_hfov` degrees."""
    return math.degrees(2 * math.atan(math.tan(math.radians(train_hfov) / 2) / ratio))


def ratio_for_hfov(hfov: float, train_hfov: float) -> float:
    """Focal ratio f / f_train of a camera of `hfov` degrees horizontal field of view (same image size) to the
    training camera of `train_hfov` degrees."""
    return math.tan(math.radians(train_hfov) / 2) / math.tan(math.radians(hfov) / 2)


def focal_bins(train_hfov: float, test_hfov: tuple[float, float], n_bins: int) -> list[FocalBin]:
    """`n_bins` bins of equal width in log focal ratio, spanning the test cameras' fields of view.

    Args:
        train_hfov: the training camera's horizontal field of view, degrees.
        test_hfov: (widest, narrowest) or (narrowest, widest) horizontal field of view of the test cameras, degrees.
        n_bins: number of bins.
    """
    ratios = sorted(ratio_for_hfov(h, train_hfov) for h in test_hfov)
    edges = np.exp(np.linspace(math.log(ratios[0]), math.log(ratios[1]), n_bins + 1))
    return [FocalBin(float(lo), float(hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def write_test_bins(
    root: Path, bins: list[FocalBin], per_bin: int, size: tuple[int, int], train_hfov: float, seed: int
) -> list[Path]:
    """New scenes through new cameras, `per_bin` for each focal-ratio bin (field of view uniform inside the bin);
    returns the file list of each bin (`root/bin<i>/splits/val.txt`).

    Args:
        root: output folder.
        bins: focal-ratio bins.
        per_bin: scenes per bin.
        size: (width, height) in pixels, the training images' size (so r = fx / f_train).
        train_hfov: the training camera's horizontal field of view, degrees.
        seed: scenes and cameras are a function of it.
    """
    lists = []
    for i, focal_bin in enumerate(bins):
        fov = tuple(sorted(hfov_for_ratio(r, train_hfov) for r in (focal_bin.lo, focal_bin.hi)))
        out = write_synthetic_dataset(root / f"bin{i}", 0, per_bin, size, fov, fov, seed=seed * 100 + i)
        lists.append(out / "splits" / "val.txt")
    return lists


def model_predictor(checkpoint: Path, device: torch.device, precision: str) -> Predictor:
    """A predictor running the model of `checkpoint` (our format) under `precision` autocast."""
    model = build_model_from_checkpoint(checkpoint, device=device)

    def predict(image: Tensor, K: Tensor, has_K: Tensor) -> Tensor:
        with autocast_context(device, precision):
            return model(image, K, has_K).float()

    return predict


def normalised_focal(K: np.ndarray, height: int, width: int) -> float:
    """fx in units of the image's short side (dimensionless)."""
    return float(K[0, 0]) / min(height, width)


@torch.no_grad()
def evaluate_split(
    predict: Predictor,
    list_path: Path,
    size: int,
    f_train: float,
    depth_range: tuple[float, float],
    zoom: float,
    device: torch.device,
) -> tuple[dict, Example | None]:
    """Metrics of one file list, per image and pooled.

    Args:
        predict: the model (or baseline).
        list_path: `image depth intrinsics` list.
        size: network input short side, pixels (the training crop).
        f_train: the training camera's focal length in units of its image's short side.
        depth_range: (min, max) ground truth evaluated, metres.
        zoom: centre zoom factor of the zoom slope (> 1).
        device: where the model runs.

    Returns:
        {abs_rel, d1 (official per-image definitions, mean over images), median_scale (median over images of the
        per-image median of predicted / true depth), zoom_slope (mean over images), focal_ratio (geometric mean),
        n_images, per_image: {focal_ratio, median_scale, zoom_slope} lists}, and the first image as an Example.
    """
    dataset = GenericDatasetWithIntrinsics(list_path, mode="val", size=(size, size), min_depth=depth_range[0],
                                           max_depth=depth_range[1])  # fmt: skip
    metrics, example = MetricAccumulator(), None
    per_image: dict[str, list[float]] = {"focal_ratio": [], "median_scale": [], "zoom_slope": []}
    for sample in DataLoader(dataset, batch_size=1):
        image, K, has_K = (sample[key].to(device) for key in ("image", "intrinsics", "has_intrinsics"))
        net = predict(image, K, has_K)
        truth = sample["depth"].to(device)
        pred = F.interpolate(net[:, None], truth.shape[-2:], mode="bilinear", align_corners=True)[:, 0]
        valid = sample["depth_valid"].to(device) & torch.isfinite(truth) & (truth > 0)
        if not bool(valid.any()):
            continue
        metrics.update(pred, truth, valid)
        entry = dataset.entries[int(sample["index"][0])]
        ratio = normalised_focal(entry.intrinsics, *truth.shape[-2:]) / f_train
        slope = zoom_slope(lambda x, k: predict(x, k, has_K), image, K, sample["image_valid"].to(device), zoom, net)
        per_image["focal_ratio"].append(ratio)
        per_image["median_scale"].append(float((pred[valid] / truth[valid]).median()))
        per_image["zoom_slope"].append(float(slope[0]))
        if example is None:
            rgb = cv2.cvtColor(cv2.imread(str(entry.image)), cv2.COLOR_BGR2RGB)
            example = Example(rgb, truth[0].cpu().numpy(), pred[0].cpu().numpy(), valid[0].cpu().numpy(), ratio)
    return {**metrics.compute(), **pooled(per_image), "per_image": per_image}, example


def pooled(per_image: dict[str, list[float]]) -> dict[str, float]:
    """median_scale, zoom_slope, focal_ratio, n_images and scale_slope (least-squares slope of log median scale
    on log focal ratio: -1 for depth from apparent size alone, 0 for a camera-aware model; NaN for a single focal
    ratio) of per-image values."""
    ratios, scales = np.log(per_image["focal_ratio"]), np.log(per_image["median_scale"])
    slopes = np.array(per_image["zoom_slope"])
    spread = ratios.max() - ratios.min() if ratios.size else 0.0
    return {
        "median_scale": float(np.exp(np.median(scales))),
        "zoom_slope": float(slopes[np.isfinite(slopes)].mean()) if np.isfinite(slopes).any() else math.nan,
        "focal_ratio": float(np.exp(ratios.mean())),
        "n_images": int(ratios.size),
        "scale_slope": float(np.polyfit(ratios, scales, 1)[0]) if spread > 1e-6 else math.nan,
    }


def evaluate_bins(predict: Predictor, lists: list[Path], **kwargs) -> tuple[dict, list[Example]]:
    """`evaluate_split` on each list (kwargs: its remaining arguments) and pooled over all of them.

    Returns:
        {"bins": [metrics of each list], "all": metrics of every image of all lists (abs_rel and d1 averaged over
        images, the other keys of `pooled`)}, and the Example of each list.
    """
    results, examples = [], []
    for list_path in lists:
        result, example = evaluate_split(predict, list_path, **kwargs)
        results.append(result)
        examples.append(example)
    counts = np.array([r["n_images"] for r in results], dtype=float)
    merged = {key: [v for r in results for v in r["per_image"][key]] for key in results[0]["per_image"]}
    everything = {key: float((counts * [r[key] for r in results]).sum() / counts.sum()) for key in ("abs_rel", "d1")}
    return {"bins": results, "all": {**everything, **pooled(merged)}}, examples


def real_camera_lists(source: Path, out: Path) -> dict[str, Path]:
    """Group the calibrated frames of real RGB-D data by camera and write one file list per camera.

    Args:
        source: a file list, or a folder whose splits/train.txt and splits/val.txt are read (e.g. real_rgbd/).
        out: folder for the per-camera lists and the intrinsics files they name.

    Returns:
        {camera label: list path}; the label is the frame name's first word, the focal length fx in pixels and
        the image size, e.g. "kitti 722px 1242x375".
    """
    lists = [source] if source.is_file() else [source / "splits" / f"{s}.txt" for s in ("train", "val")]
    groups: dict[str, list[str]] = {}
    seen: set[Path] = set()
    (out / "intrinsics").mkdir(parents=True, exist_ok=True)
    for list_path in (p for p in lists if p.is_file()):
        for entry in read_filelist(list_path)[0]:
            if entry.intrinsics is None or entry.image_size is None or entry.image.resolve() in seen:
                continue
            seen.add(entry.image.resolve())
            size = entry.image_size
            label = f"{entry.image.stem.split('_')[0]} {entry.intrinsics[0, 0]:.0f}px {size.width}x{size.height}"
            K_path = out / "intrinsics" / f"{entry.image.stem}.npy"
            np.save(K_path, entry.intrinsics)
            fields = [str(entry.image.resolve()), str(entry.depth.resolve()), str(K_path.resolve())]
            groups.setdefault(label, []).append(format_line(fields))
    written = {}
    for i, (label, lines) in enumerate(sorted(groups.items())):
        written[label] = out / f"camera{i}.txt"
        written[label].write_text("\n".join(lines) + "\n")
    return written
