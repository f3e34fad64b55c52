"""The data of a training run: every dataset of `--dataset` and `--eval-datasets` built, checked and described.

A single dataset is a mixture of one. Every start-up check (list lines, sizes, units and range) runs on every split
of every dataset, and every problem is reported at once, each line starting with the dataset's label, before the
model is built; then a table of the datasets is logged (`startup_table`).
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from dataset import DataError, GenericDatasetWithIntrinsics
from dataset.check import DepthSummary, check_dataset, check_splits, resolved_images
from dataset.mixture import DatasetSpec, MixtureError, check_disjoint, mixture_record, parse_mixture
from dataset.protocol import EvalProtocol
from dataset.registry import build_dataset

from .teacher_cache import teacher_cache_dir

logger = logging.getLogger(__name__)

MIXTURE_FIX = "depth_scale = ..., max_depth = ... in its [[dataset]] table of a TOML mixture (docs/MIXTURES.md)"


@dataclass
class MixtureData:
    """The built datasets, by label in the mixture's order.

    Attributes:
        specs: the training mixture; held_out: the --eval-datasets (evaluated, never trained on).
        train: training split of each training dataset (empty with --eval-only).
        val: validation split of every dataset, training ones first.
        protocols: evaluation protocol of every dataset.
        summaries: depth summary of each training split (of the validation split for held-out datasets).
    """

    specs: list[DatasetSpec]
    held_out: list[DatasetSpec]
    train: dict[str, GenericDatasetWithIntrinsics] = field(default_factory=dict)
    val: dict[str, GenericDatasetWithIntrinsics] = field(default_factory=dict)
    protocols: dict[str, EvalProtocol] = field(default_factory=dict)
    summaries: dict[str, DepthSummary] = field(default_factory=dict)

    @property
    def train_labels(self) -> list[str]:
        return [spec.label for spec in self.specs]


def read_mixture(args: argparse.Namespace) -> tuple[list[DatasetSpec], list[DatasetSpec]]:
    """The training mixture and the held-out datasets of the flags, recorded in `args.mixture` and
    `args.eval_mixture` (config.json and the checkpoint's settings); a bad spec stops with its one line."""
    try:
        specs = parse_mixture(args.dataset, args.data_root)
        held_out = parse_mixture(args.eval_datasets, args.data_root, "--eval-datasets") if args.eval_datasets else []
        check_disjoint(specs, held_out)
    except MixtureError as err:
        raise SystemExit(str(err)) from None
    args.mixture, args.eval_mixture = mixture_record(specs), mixture_record(held_out)
    return specs, held_out


def dataset_options(spec: DatasetSpec, args: argparse.Namespace) -> dict:
    """Units and ground-truth range of one dataset: its own settings, else the flags'."""
    return {
        "depth_scale": args.depth_scale if spec.depth_scale is None else spec.depth_scale,
        "min_depth": args.min_depth if spec.min_depth is None else spec.min_depth,
        "max_depth": args.max_depth if spec.max_depth is None else spec.max_depth,
    }


def resolve_protocol(
    spec: DatasetSpec, val_set: GenericDatasetWithIntrinsics, args: argparse.Namespace
) -> EvalProtocol:
    """Each setting from the dataset's `eval` entry, else the --eval-* flag, else the dataset's declared protocol,
    else its training range without a crop."""
    options = dataset_options(spec, args)
    declared = val_set.eval_protocol or EvalProtocol("none", options["min_depth"], options["max_depth"])
    return EvalProtocol(
        next(v for v in (spec.eval_crop, args.eval_crop, declared.crop) if v is not None),
        next(v for v in (spec.eval_min_depth, args.eval_min_depth, declared.min_depth) if v is not None),
        next(v for v in (spec.eval_max_depth, args.eval_max_depth, declared.max_depth) if v is not None),
    )


def training_options(args: argparse.Namespace) -> dict:
    """What the training splits add to the validation ones: zoom, camera dropout and the teacher cache folder
    (`args.teacher_precision` already resolved to bf16 or fp32)."""
    cache = None
    if args.cache_teacher:
        bf16 = args.teacher_precision == "bf16"
        cache = teacher_cache_dir(Path(args.save_path) / "teacher_cache", args.teacher_checkpoint, bf16, args.img_size)
    return {
        "zoom_range": args.zoom_range,
        "camera_dropout": args.camera_dropout if args.use_camera_intrinsics else 0.0,
        "teacher_cache": cache,
    }


def build_mixture_data(
    args: argparse.Namespace,
    specs: list[DatasetSpec],
    held_out: list[DatasetSpec],
    train_options: dict | None,
) -> MixtureData:
    """Build and check the validation split of every dataset and, unless `train_options` is None (--eval-only), the
    training split of each training dataset (with `train_options`: zoom, camera dropout, teacher cache); then each
    training list against its validation list, and each held-out list against the training lists.

    Raises:
        SystemExit: every problem of every dataset and split at once; with several datasets each block starts with
            the dataset's `[label]` (a single dataset's messages are those of a run without a mixture).
    """
    data, problems = MixtureData(specs, held_out), {}  # message -> what it is about
    size = (args.img_size, args.img_size)
    for spec in [*specs, *held_out]:
        label = f"[{spec.label}] " if len(specs) + len(held_out) > 1 else ""
        units = dataset_options(spec, args)
        if units["max_depth"] > args.max_depth:
            message = (f"max_depth {units['max_depth']:g} m is beyond the model's --max-depth {args.max_depth:g} m "
                       "(its head cannot predict deeper): lower it or raise --max-depth")  # fmt: skip
            problems.setdefault(message, []).append(f"{label}settings")
            continue
        for split in ("val", "train") if spec in specs and train_options is not None else ("val",):
            what = f"{label}{'training' if split == 'train' else 'validation'} data"
            try:
                dataset = build_dataset(
                    spec.source, split, size, split, spec.data_root, units["max_depth"],
                    depth_scale=units["depth_scale"], min_depth=units["min_depth"],
                    skip_bad_samples=args.skip_bad_samples,
                    allow_offcentre_principal_point=args.allow_offcentre_principal_point,
                    **(train_options if split == "train" else {}),
                )  # fmt: skip
                summary = check_dataset(dataset, what)  # sizes, units and range, before the model is built
            except DataError as err:
                message = str(err)
                if label and "likely fix: --" in message:  # the flags would change every dataset of the mixture
                    message += f"\n  in a mixture, set them for {spec.label} alone: {MIXTURE_FIX}"
                problems.setdefault(message, []).append(what)
                continue
            getattr(data, split)[spec.label] = dataset
            if split == "train" or spec.label not in data.summaries:
                data.summaries[spec.label] = summary
    if not problems:
        train_images = {name: resolved_images(d) for name, d in data.train.items()}  # each list resolved once
        val_images = {name: resolved_images(d) for name, d in data.val.items()}
        for spec in [*specs, *held_out]:
            label = f"[{spec.label}] " if len(specs) + len(held_out) > 1 else ""
            for name in [spec.label] if spec.label in data.train else list(data.train):
                try:
                    check_splits(data.train[name], data.val[spec.label], train_images[name], val_images[spec.label])
                except DataError as err:
                    problems.setdefault(str(err), []).append(f"{label}data")
    if problems:
        raise SystemExit("\n".join(f"{' and '.join(whats)}: {err}" for err, whats in problems.items()))
    for spec in [*specs, *held_out]:
        data.protocols[spec.label] = resolve_protocol(spec, data.val[spec.label], args)
    if len(specs) == 1:  # one training dataset: config.json keeps its protocol in the --eval-* flags, as before
        protocol = data.protocols[specs[0].label]
        args.eval_crop, args.eval_min_depth, args.eval_max_depth = protocol.crop, protocol.min_depth, protocol.max_depth
    return data


def focal_range(dataset: GenericDatasetWithIntrinsics) -> str:
    """fx range in pixels of the dataset's images (and the share with K when not all have it), or 'no K'."""
    focals = [entry.intrinsics[0, 0] for entry in dataset.entries if entry.intrinsics is not None]
    if not focals:
        return "no K"
    share = "" if len(focals) == len(dataset.entries) else f" ({len(focals) / len(dataset.entries):.0%} with K)"
    low, high = min(focals), max(focals)
    return (f"{low:.0f} px" if math.isclose(low, high, rel_tol=1e-3) else f"{low:.0f}-{high:.0f} px") + share


def startup_table(data: MixtureData, args: argparse.Namespace, step_draws: int, steps_per_epoch: int) -> str:
    """One row per dataset: label, path, train/val counts, weight, share of the draws, samples per epoch, focal
    range, depth percentiles of the checked maps and the depth range used (held-out datasets: evaluation only)."""
    total = sum(spec.weight for spec in data.specs)
    header = ("label", "path", "train", "val", "weight", "share", "per epoch", "focal", "depth p1/p50/p99 (m)",
              "range used (m)")  # fmt: skip
    rows = [header]
    for spec in [*data.specs, *data.held_out]:
        trained = spec.label in data.train
        share = spec.weight / total
        summary = data.summaries.get(spec.label)
        options = dataset_options(spec, args)
        protocol = data.protocols[spec.label]
        depth = "-" if summary is None else f"{summary.p1:.3g}/{summary.p50:.3g}/{summary.p99:.3g}"
        used = (f"{options['min_depth']:g}-{options['max_depth']:g} (eval {protocol.min_depth:g}-"
                f"{protocol.max_depth:g}, crop {protocol.crop})")  # fmt: skip
        rows.append((
            spec.label, _short(spec.source, spec.data_root), str(len(data.train[spec.label])) if trained else "-",
            str(len(data.val[spec.label])), f"{spec.weight:g}" if spec in data.specs else "eval only",
            f"{share:.1%}" if spec in data.specs else "-",
            str(round(share * step_draws * steps_per_epoch)) if trained else "-",
            focal_range(data.train[spec.label] if trained else data.val[spec.label]), depth, used,
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _short(source: str, data_root: str | None) -> str:
    return f"{source} ({data_root})" if data_root else source
