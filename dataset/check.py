"""The start-up data check: sizes of every sample from the file headers, depth values of a fixed sample of them.

Run by train.py before the model is built, so wrong units or sizes stop the run at once with the numbers and the
likely fix, instead of training on nothing (a loss of 0 on depth that is all beyond --max-depth).

    from dataset.check import check_dataset
    summary = check_dataset(train_set, "training data")   # raises DataError; --skip-bad-samples skips lines
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .filelist import bad_lines
from .generic_with_intrinsics import GenericDatasetWithIntrinsics
from .headers import read_depth_header, size_mismatch
from .io import DataError
from .progress import progress
from .units import COMMON_DEPTH_SCALES, format_depth_scale

logger = logging.getLogger(__name__)

MAX_VALUE_CHECKS = 300  # depth maps whose values are read: all of a smaller list, a fixed-seed sample otherwise
VALUES_PER_MAP = 2048  # measured depths kept per map for the percentiles
MIN_INSIDE = 0.5  # a smaller mean fraction of measured pixels inside [min_depth, max_depth] stops the run
WARN_OUTSIDE = 0.05  # a larger mean fraction below or above the range is worth a warning
PLAUSIBLE_MEDIAN_M = (0.2, 300.0)  # median depth of a camera scene, metres, for suggesting another scale
NICE_MAX_DEPTHS = (1, 2, 5, 10, 20, 40, 80, 100, 150, 200, 300, 500, 1000)


@dataclass
class MapStats:
    """Depth values of one map: pixel counts (measured = depth > 0) and a subsample of the measured depths (m)."""

    pixels: int
    measured: int
    below: int
    above: int
    values: np.ndarray


@dataclass
class DepthSummary:
    """What the check found: maps read (of `total`; `empty` without a measured pixel), mean fractions per map of
    its measured pixels inside, below and above the range, the fraction of all pixels measured, and percentiles
    of the measured depth over the maps (m)."""

    maps: int
    total: int
    empty: int
    inside: float
    below: float
    above: float
    measured: float
    p1: float
    p50: float
    p99: float


def check_dataset(dataset: GenericDatasetWithIntrinsics, what: str = "data") -> DepthSummary:
    """Check every line's depth size against its image's (headers; swapped sizes name EXIF orientation) and the
    depth values of up to MAX_VALUE_CHECKS maps, in threads, with progress shown (`dataset.progress`).

    Args:
        dataset: a built dataset; its depth_scale, depth reader and [min_depth, max_depth] (m) are checked.
        what: how messages name it, e.g. 'training data'.

    Returns:
        The depth summary (also logged, with a warning when much of the depth lies outside the range).

    Raises:
        DataError: every bad line at once (unreadable depth, size mismatch), unless dataset.skip_bad_samples
            (then they are skipped and logged); or depth values that are implausible for the range, with the
            numbers and the likely fix (--depth-scale, --max-depth).
    """
    total = len(dataset)
    if total <= MAX_VALUE_CHECKS:
        sampled = set(range(total))
    else:
        sampled = set(np.random.default_rng(0).choice(total, MAX_VALUE_CHECKS, replace=False).tolist())
    workers = min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        inspected = pool.map(lambda i: _inspect(dataset, i, i in sampled), range(total))
        results = list(progress(inspected, total, f"checking {what}", logger=logger))
    problems = {i: result for i, result in enumerate(results) if isinstance(result, str)}
    if problems and not dataset.skip_bad_samples:
        raise bad_lines(dataset.filelist_path, list(problems.values()))
    dataset.skip(list(problems.values()), problems.keys())
    if not dataset.entries:
        raise DataError(f"{dataset.filelist_path}: every line is bad (skipped)")
    stats = [result for result in results if isinstance(result, MapStats)]
    summary = _summarize(stats, len(dataset))
    described = _describe(summary, dataset)
    if not summary.measured:
        raise DataError(described)
    if summary.inside < MIN_INSIDE:
        fixes = likely_fixes(np.concatenate([s.values for s in stats]), dataset)
        raise DataError(
            f"{described}: implausible depth for this range"
            + "".join(f"\n  {'likely fix' if i == 0 else '        or'}: {fix}" for i, fix in enumerate(fixes))
        )
    logger.info("%s: %s", what, described)
    if summary.above >= WARN_OUTSIDE:
        logger.warning(
            "%s: %.0f%% of the measured depth lies above --max-depth %g m and is ignored (99th percentile %.3g m): "
            "--max-depth %d?", what, 100 * summary.above, dataset.max_depth, summary.p99, nice_max_depth(summary.p99),
        )  # fmt: skip
    if summary.below >= WARN_OUTSIDE:
        logger.warning(
            "%s: %.0f%% of the measured depth lies below --min-depth %g m and is ignored (1st percentile %.3g m): "
            "is --depth-scale right?", what, 100 * summary.below, dataset.min_depth, summary.p1,
        )  # fmt: skip
    if summary.empty:
        logger.warning("%s: %d of the %d checked depth maps have no measured pixel", what, summary.empty, summary.maps)
    return summary


def _inspect(dataset: GenericDatasetWithIntrinsics, index: int, read_values: bool) -> MapStats | str | None:
    """One line: its problem (a message naming the list line), its depth statistics, or None (sizes only)."""
    entry = dataset.entries[index]
    image_hw = None if entry.image_size is None else (entry.image_size.height, entry.image_size.width)
    orientation = None if entry.image_size is None else entry.image_size.orientation
    try:
        depth_hw = read_depth_header(entry.depth)
    except (DataError, OSError) as err:
        return f"{dataset.where(index)}: {entry.depth}: {err}"
    if depth_hw is not None and image_hw is not None and depth_hw != image_hw:
        return f"{dataset.where(index)}: {size_mismatch(entry.depth, depth_hw, entry.image, image_hw, orientation)}"
    if not read_values:
        return None
    try:
        depth = dataset.read_depth(index)
    except DataError as err:
        return str(err)
    if image_hw is not None and depth.shape != image_hw:
        return f"{dataset.where(index)}: {size_mismatch(entry.depth, depth.shape, entry.image, image_hw, orientation)}"
    measured = depth[depth > 0]
    step = max(1, measured.size // VALUES_PER_MAP)
    return MapStats(
        pixels=depth.size,
        measured=measured.size,
        below=int((measured < dataset.min_depth).sum()),
        above=int((measured > dataset.max_depth).sum()),
        values=measured[::step][:VALUES_PER_MAP],
    )


def _summarize(stats: list[MapStats], total: int) -> DepthSummary:
    with_depth = [s for s in stats if s.measured]
    empty = len(stats) - len(with_depth)
    if not with_depth:
        return DepthSummary(len(stats), total, empty, 0.0, 0.0, 0.0, 0.0, math.nan, math.nan, math.nan)
    below = float(np.mean([s.below / s.measured for s in with_depth]))
    above = float(np.mean([s.above / s.measured for s in with_depth]))
    measured = sum(s.measured for s in stats) / sum(s.pixels for s in stats)
    p1, p50, p99 = np.percentile(np.concatenate([s.values for s in with_depth]), [1, 50, 99])
    return DepthSummary(len(stats), total, empty, 1 - below - above, below, above, measured, p1, p50, p99)


def _describe(summary: DepthSummary, dataset: GenericDatasetWithIntrinsics) -> str:
    scope = "all" if summary.maps == summary.total else f"a fixed sample of {summary.maps}"
    scale = "" if dataset.depth_reader else f", --depth-scale {format_depth_scale(dataset.depth_scale)}"
    where = f"{scope} of the {summary.total} depth maps of {dataset.filelist_path}{scale}"
    if not summary.measured:
        return (
            f"{where}: no measured depth at all, every value is 0, negative, NaN or inf: does the depth column of the "
            "list point at depth maps (an .h5 with several datasets needs one named 'depth')?"
        )
    if math.isinf(dataset.max_depth):  # a named dataset's evaluation split keeps every measured pixel
        inside = "no depth range applies to this split"
    else:
        inside = (
            f"{summary.inside:.0%} of the measured pixels lie inside [--min-depth {dataset.min_depth:g}, --max-depth "
            f"{dataset.max_depth:g}] m ({summary.below:.0%} below, {summary.above:.0%} above)"
        )
    return (
        f"{where}: {inside}; measured depth {_percentiles(summary.p1, summary.p50, summary.p99)}; "
        f"{summary.measured:.0%} of the pixels are measured"
    )


def likely_fixes(depth_m: np.ndarray, dataset: GenericDatasetWithIntrinsics) -> list[str]:
    """Up to three flag changes that bring measured depths `depth_m` (m, read with the dataset's scale) to a
    plausible median and into [min_depth, max_depth], fewest changes first: --max-depth alone, another
    --depth-scale of COMMON_DEPTH_SCALES, or both (the depth each gives is part of the text)."""
    options: list[tuple[str | None, np.ndarray]] = [(None, depth_m)]
    if dataset.depth_reader is None:  # a named dataset's reader decodes its own units
        raw = depth_m / dataset.depth_scale
        options += [
            (f"--depth-scale {spelling} ({meaning})", raw * scale)
            for spelling, scale, meaning in COMMON_DEPTH_SCALES
            if not math.isclose(scale, dataset.depth_scale, rel_tol=1e-6)
        ]
    fixes = []
    for scale_flag, depth in options if depth_m.size else []:
        p1, p50, p99 = np.percentile(depth, [1, 50, 99])
        if not PLAUSIBLE_MEDIAN_M[0] <= p50 <= PLAUSIBLE_MEDIAN_M[1]:
            continue
        flags = [scale_flag] if scale_flag else []
        if np.mean((depth >= dataset.min_depth) & (depth <= dataset.max_depth)) < 0.9:
            flags.append(f"--max-depth {nice_max_depth(p99)}")
        if flags:
            fixes.append((len(flags), f"{' '.join(flags)}: {_percentiles(p1, p50, p99)}"))
    return [text for _, text in sorted(fixes, key=lambda fix: fix[0])[:3]]


def nice_max_depth(depth_m: float) -> int:
    """The smallest of NICE_MAX_DEPTHS at or above `depth_m` (m), else `depth_m` rounded up."""
    return next((d for d in NICE_MAX_DEPTHS if d >= depth_m), math.ceil(depth_m))


def _percentiles(p1: float, p50: float, p99: float) -> str:
    return f"{p1:.3g} / {p50:.3g} / {p99:.3g} m (1st / 50th / 99th percentile)"
