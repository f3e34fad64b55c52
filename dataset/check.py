"""The start-up data checks: sizes of every sample from the file headers, depth values of a fixed sample of them
(and of every map stored in a rarer file type than the list's usual one), and a training list against its
validation list.

Run by train.py before the model is built, so wrong units or sizes stop the run at once with the numbers and the
likely fix, instead of training on nothing (a loss of 0 on depth that is all beyond --max-depth). Each function
checks one dataset (or one training / validation pair), so a run over several datasets calls them per dataset.

    from dataset.check import check_dataset, check_splits
    summary = check_dataset(train_set, "training data")   # raises DataError; --skip-bad-samples skips lines
    check_splits(train_set, val_set)                      # raises DataError for identical lists, warns on overlap
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .filelist import bad_lines
from .generic_with_intrinsics import GenericDatasetWithIntrinsics
from .headers import read_depth_header, size_mismatch
from .io import DataError
from .progress import progress
from .units import format_depth_scale, likely_fixes, maps_in_other_units, other_unit, percentiles_text, range_warnings

logger = logging.getLogger(__name__)

# Depth maps whose values are read: all of a smaller list, a fixed-seed sample otherwise, plus up to as many of
# the maps stored in a rarer file type than the list's usual one (one .png among .npy maps: another unit?).
MAX_VALUE_CHECKS = 300
VALUES_PER_MAP = 2048  # measured depths kept per map for the percentiles
MIN_INSIDE = 0.5  # a smaller mean fraction of measured pixels inside [min_depth, max_depth] stops the run
SHOWN_OVERLAP = 3  # images named in the warning about images in both lists


@dataclass
class MapStats:
    """Depth values of one map: pixel counts (measured = depth > 0), a subsample of the measured depths and their
    median (m; NaN without a measured pixel)."""

    pixels: int
    measured: int
    below: int
    above: int
    values: np.ndarray
    median: float


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
    depth values of up to MAX_VALUE_CHECKS maps (see `maps_to_read`), in threads, with progress shown.

    Args:
        dataset: a built dataset; its depth_scale, depth reader and [min_depth, max_depth] (m) are checked.
        what: how messages name it, e.g. 'training data'.

    Returns:
        The depth summary of the maps read (also logged, with a warning when much of the depth lies outside the
        range or it looks like inverse or normalised depth).

    Raises:
        DataError: every bad line at once (unreadable depth, size mismatch, a map whose depth is implausible for
            the list's unit), unless dataset.skip_bad_samples (then they are skipped and logged); or depth values
            that are implausible for the range, with the numbers and the likely fix (--depth-scale, --max-depth).
    """
    read = maps_to_read(dataset)
    workers = min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        inspected = pool.map(lambda i: _inspect(dataset, i, i in read), range(len(dataset)))
        results = list(progress(inspected, len(dataset), f"checking {what}", logger=logger))
    problems = {i: result for i, result in enumerate(results) if isinstance(result, str)}
    stats = {i: result for i, result in enumerate(results) if isinstance(result, MapStats)}
    problems.update(_other_units(dataset, stats))
    messages = [problems[i] for i in sorted(problems)]
    if problems and not dataset.skip_bad_samples:
        raise bad_lines(dataset.filelist_path, messages)
    dataset.skip(messages, problems.keys())
    kept = [s for i, s in stats.items() if i not in problems]
    summary = _summarize(kept, len(dataset))
    described = _describe(summary, dataset)
    if not summary.measured:
        raise DataError(described)
    if summary.inside < MIN_INSIDE:
        own_units = dataset.depth_reader is not None  # a named dataset's reader decodes its own units
        values = np.concatenate([s.values for s in kept])
        fixes = likely_fixes(values, dataset.depth_scale, dataset.min_depth, dataset.max_depth, own_units)
        raise DataError(
            f"{described}: implausible depth for this range"
            + "".join(f"\n  {'likely fix' if i == 0 else '        or'}: {fix}" for i, fix in enumerate(fixes))
        )
    logger.info("%s: %s", what, described)
    percentiles = (summary.p1, summary.p50, summary.p99)
    for warning in range_warnings(summary.below, summary.above, *percentiles, dataset.min_depth, dataset.max_depth):
        logger.warning("%s: %s", what, warning)
    if summary.empty:
        logger.warning("%s: %d of the %d checked depth maps have no measured pixel", what, summary.empty, summary.maps)
    return summary


def maps_to_read(dataset: GenericDatasetWithIntrinsics) -> set[int]:
    """Indices of the maps whose depth values `check_dataset` reads: every map of a list of up to MAX_VALUE_CHECKS,
    else a fixed-seed sample of that many plus up to as many of those stored in a rarer file type than the most
    common one (the likeliest to be in another unit)."""
    total = len(dataset)
    if total <= MAX_VALUE_CHECKS:
        return set(range(total))
    read = set(np.random.default_rng(0).choice(total, MAX_VALUE_CHECKS, replace=False).tolist())
    suffixes = [entry.depth.suffix.lower() for entry in dataset.entries]
    usual = Counter(suffixes).most_common(1)[0][0]
    rarer = [i for i, suffix in enumerate(suffixes) if suffix != usual]
    return read | set(rarer[:MAX_VALUE_CHECKS])


def _other_units(dataset: GenericDatasetWithIntrinsics, stats: dict[int, MapStats]) -> dict[int, str]:
    """One message per map whose depth is implausible for its list's unit (`maps_in_other_units`)."""
    medians = {i: s.median for i, s in stats.items() if s.measured}
    odd, reference = maps_in_other_units(medians)
    own_units = dataset.depth_reader is not None
    return {
        i: f"{dataset.where(i)}: {dataset.entries[i].depth}: "
        + other_unit(medians[i], reference, dataset.depth_scale, own_units)
        for i in odd
    }


def resolved_images(dataset: GenericDatasetWithIntrinsics) -> frozenset[Path]:
    """The resolved image paths of a dataset's list, as `check_splits` compares them."""
    return frozenset(entry.image.resolve() for entry in dataset.entries)


def check_splits(
    train_set: GenericDatasetWithIntrinsics,
    val_set: GenericDatasetWithIntrinsics,
    train_images: frozenset[Path] | None = None,
    val_images: frozenset[Path] | None = None,
) -> None:
    """Compare a training list with its validation list by image file (resolved paths; `resolved_images` of each,
    computed here unless given, e.g. when one list is compared with several).

    Raises:
        DataError: both lists hold the same images (the same list twice): validation would only measure how well
            the training images are remembered. Images in both lists (some, not all) get a warning with the count.
    """
    train_images = resolved_images(train_set) if train_images is None else train_images
    val_images = resolved_images(val_set) if val_images is None else val_images
    shared = sorted(train_images & val_images)
    if not shared:
        return
    split = (
        "split the images into disjoint lists, e.g. `python -m dataset.make_filelist --images DIR --depths DIR "
        "[--intrinsics DIR] --out FOLDER/splits --val-fraction 0.1`"
    )
    if train_images == val_images:
        raise DataError(
            f"the training list {train_set.filelist_path} and the validation list {val_set.filelist_path} hold the "
            f"same {len(shared)} images: validation would only measure how well the training images are remembered; "
            f"{split}"
        )
    shown = ", ".join(str(path) for path in shared[:SHOWN_OVERLAP]) + (", ..." if len(shared) > SHOWN_OVERLAP else "")
    logger.warning(
        "%d of the %d validation images of %s are also in the training list %s (%s): their metrics flatter the model; "
        "remove them from one of the lists", len(shared), len(val_images), val_set.filelist_path,
        train_set.filelist_path, shown,
    )  # fmt: skip


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
        median=float(np.median(measured)) if measured.size else math.nan,
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
        f"{where}: {inside}; measured depth {percentiles_text(summary.p1, summary.p50, summary.p99)}; "
        f"{summary.measured:.0%} of the pixels are measured"
    )
