"""Evaluation of every dataset of a run, each under its own protocol, and what the run records of it.

Keys of the results (TensorBoard and metrics.jsonl add `eval/`): `<label>/<metric>` for every dataset of the mixture
and of --eval-datasets, `mean/<metric>` the unweighted mean over the training datasets, and `<metric>` that same
mean (Depth Anything V2's tags, which a single dataset's run has always logged). The mean chooses best.pth;
held-out datasets are reported and never choose.
"""

from __future__ import annotations

import argparse
import logging
import math
from typing import Callable

import numpy as np
from torch import nn

from dataset import DataError

from . import engine
from .checkpoint import TrainState, update_best
from .dist import DistInfo
from .logger import MetricsWriter
from .mixture_data import MixtureData

logger = logging.getLogger(__name__)


def evaluate_mixture(
    model: nn.Module,
    data: MixtureData,
    args: argparse.Namespace,
    info: DistInfo,
    panels: dict[str, list[np.ndarray]] | None = None,
) -> dict[str, float]:
    """Metrics of every validation split under its protocol (see the module docstring for the keys).

    Args:
        panels: with it, each dataset's first validation panels are put under its label.

    Raises:
        DataError: a dataset whose evaluation has no usable image, naming its label.
    """
    per_dataset = {}
    for label, dataset in data.val.items():
        shots = None if panels is None else panels.setdefault(label, [])
        try:
            per_dataset[label] = engine.evaluate(model, dataset, data.protocols[label], args, info, shots)
        except DataError as err:
            raise DataError(f"[{label}] {err}") from None
    mean = mean_over(per_dataset[label] for label in data.train_labels)
    results = {**mean, **{f"mean/{k}": v for k, v in mean.items()}}
    for label, metrics in per_dataset.items():
        results.update({f"{label}/{k}": v for k, v in metrics.items()})
    return results


def mean_over(results) -> dict[str, float]:
    """Unweighted mean of each metric over the result dicts that have a finite value of it."""
    values: dict[str, list[float]] = {}
    for metrics in results:
        for key, value in metrics.items():
            if math.isfinite(value):
                values.setdefault(key, []).append(value)
    return {key: float(np.mean(v)) for key, v in values.items()}


def evaluate_and_record(
    model: nn.Module,
    data: MixtureData,
    args: argparse.Namespace,
    info: DistInfo,
    state: TrainState,
    writer: MetricsWriter | None,
    save: Callable[[str], None],
) -> None:
    """Evaluate the current weights, log and write the metrics and the validation panels, and save best.pth when
    the mean abs_rel improved."""
    panels: dict[str, list[np.ndarray]] = {}
    results = evaluate_mixture(model, data, args, info, panels if writer else None)
    log_results(f"epoch {state.epoch} eval", results, data)
    if writer:
        writer.write(state.iteration, {f"eval/{k}": v for k, v in results.items()}, epoch=state.epoch)
        shots = {f"eval/images/{label}/{i}": p for label, ps in panels.items() for i, p in enumerate(ps)}
        writer.write_images(state.iteration, shots)
    state.evaluated_iteration = state.iteration
    if update_best(state.previous_best, {k: v for k, v in results.items() if "/" not in k}):
        save("best.pth")


def log_results(title: str, results: dict[str, float], data: MixtureData) -> None:
    """One log line per dataset and one for the mean."""
    for label in [*data.val, "mean"]:
        metrics = {k.split("/", 1)[1]: v for k, v in results.items() if k.startswith(f"{label}/")}
        held = " (held out)" if label in data.val and label not in data.train_labels else ""
        logger.info("%s %s%s: %s", title, label, held, " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
