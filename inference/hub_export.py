"""export.py --format hf: a model folder to share on the Hugging Face hub, the training facts of its model card, and
the check that the folder loads back with the same output (in transformers for camera-less models)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from dataset.io import DataError
from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.geometry import canonical_intrinsics
from depth_anything_v2.hub import parse_hub_name
from util.logger import read_metrics

CHECK_SIZE = 518
METRICS_FILE = "metrics.jsonl"


def check_folder_output(output: Path, camera_less_check: bool) -> None:
    """Refuse (DataError) an --output that is a file or a folder with files in it, and a check that needs
    transformers when it is not installed."""
    if output.is_file() or (output.is_dir() and any(output.iterdir())):
        raise DataError(f"--output {output}: exists and is not an empty folder; give a new folder for --format hf")
    if camera_less_check and importlib.util.find_spec("transformers") is None:
        raise DataError(
            "--format hf checks a camera-less model's folder in transformers, which is not installed: "
            "pip install transformers (or this package's [hf] extra), or add --no-check"
        )


def training_summary(source: Path, checkpoint: dict) -> dict:
    """What a training checkpoint says for the model card: datasets, starting weights, iterations, and the last
    evaluation of metrics.jsonl beside it (see `depth_anything_v2.model_card.model_card`)."""
    args = checkpoint.get("args") if isinstance(checkpoint.get("args"), dict) else {}
    summary: dict = {}
    if args.get("dataset"):
        datasets = args["dataset"] if isinstance(args["dataset"], list) else [args["dataset"]]
        summary["datasets"] = [Path(str(d)).name for d in datasets]  # a name, not this machine's folders
    if args.get("pretrained_from"):
        start = str(args["pretrained_from"])
        summary["pretrained_from"] = start if parse_hub_name(start) else Path(start).name
    if isinstance(checkpoint.get("iteration"), int):
        summary["iterations"] = checkpoint["iteration"]
    metrics_file = source.parent / METRICS_FILE if source.is_file() else None
    if metrics_file is not None and metrics_file.is_file():
        evaluations = []
        for event in read_metrics(metrics_file):
            scalars = {k.removeprefix("eval/"): v for k, v in event.items() if k.startswith("eval/") and v == v}
            if scalars:  # (v == v: not NaN, which the run wrote as null)
                evaluations.append((event.get("step"), scalars))
        if evaluations:
            summary["metrics_step"], summary["metrics"] = evaluations[-1]
    return summary


def _relative_difference(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


@torch.inference_mode()
def compare_folder(folder: Path, model: DepthAnythingV2) -> tuple[str, float]:
    """Load `folder` back (transformers' `DepthAnythingForDepthEstimation` for camera-less models, else
    `DepthAnythingV2.from_pretrained`) and compare its depth with `model`'s on a seeded 518 x 518 input (and a K).

    Returns:
        (what loaded it, the largest difference relative to the largest depth).
    """
    image = torch.randn(1, 3, CHECK_SIZE, CHECK_SIZE, generator=torch.Generator().manual_seed(0))
    model = model.float().eval()
    if model.cam_encoder is None:
        from transformers import DepthAnythingForDepthEstimation

        loaded = DepthAnythingForDepthEstimation.from_pretrained(str(folder)).eval()
        return "transformers", _relative_difference(loaded(pixel_values=image).predicted_depth, model(image))
    K = torch.as_tensor(canonical_intrinsics(CHECK_SIZE, CHECK_SIZE), dtype=torch.float32)[None]
    K[:, :2, :2] *= 1.3  # a camera other than the canonical one, so that K matters
    loaded = DepthAnythingV2.from_pretrained(folder)
    return "DepthAnythingV2.from_pretrained", _relative_difference(loaded(image, K), model(image, K))
