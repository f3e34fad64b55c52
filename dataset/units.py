"""Depth units: `--depth-scale` values (numbers or fractions), the usual encodings of stored depth, and what measured
depth values say about their unit (the likely fix of a wrong scale, a map in another unit, disparity saved as depth)."""

from __future__ import annotations

import argparse
import math
from fractions import Fraction

import numpy as np

# The usual stored depth encodings, as (--depth-scale spelling, metres per stored unit, what stores it).
COMMON_DEPTH_SCALES: tuple[tuple[str, float, str], ...] = (
    ("1/256", 1 / 256, "16-bit PNG in 1/256 m, e.g. KITTI"),
    ("0.001", 1e-3, "millimetres, e.g. NYU, Kinect, RealSense"),
    ("1/5000", 1 / 5000, "16-bit PNG in 1/5000 m, e.g. TUM RGB-D"),
    ("0.01", 1e-2, "centimetres, e.g. Virtual KITTI 2"),
    ("1", 1.0, "metres"),
)


def parse_depth_scale(text: str) -> float:
    """`--depth-scale` as a float: a positive finite number (`0.001`, `1e-3`) or fraction (`1/256`).

    Raises:
        argparse.ArgumentTypeError: naming the value and the accepted spellings (argparse prints it).
    """
    try:
        numerator, _, denominator = text.strip().partition("/")
        value = float(Fraction(numerator) / Fraction(denominator)) if denominator else float(numerator)
    except (ValueError, ZeroDivisionError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive number or fraction of metres per stored depth unit "
            "(e.g. 1 for metres, 0.001 or 1/1000 for millimetres, 1/256 for KITTI PNGs)"
        )
    return value


def format_depth_scale(scale: float) -> str:
    """A --depth-scale value as a user writes it: `1/256` for the reciprocal of an integer, else `0.001` style."""
    inverse = 1 / scale
    if scale < 1 and abs(inverse - round(inverse)) < 1e-6 * inverse:
        return f"1/{round(inverse)}"
    return f"{scale:g}"


PLAUSIBLE_MEDIAN_M = (0.2, 300.0)  # median depth of a camera scene, metres
MAX_SCENE_DEPTH_M = 1000.0  # no camera scene of a depth dataset is deeper: beyond it, a unit is wrong
NICE_MAX_DEPTHS = (1, 2, 5, 10, 20, 40, 80, 100, 150, 200, 300, 500, 1000)
# A map whose median depth lies outside PLAUSIBLE_MEDIAN_M and this many times (or less) the other maps' median is
# in another unit: scenes of one list differ by less (indoor 2 m against street 15 m), units by 5 (cm / mm) or more.
OTHER_UNIT_RATIO = 20.0
# Measured depth whose 99th percentile stays below this (m) while --max-depth is 10x higher looks like inverse
# depth (disparity) or depth normalised to 0..1, not metres.
INVERSE_DEPTH_P99_M = 1.5
WARN_OUTSIDE = 0.05  # a larger mean fraction of measured depth below or above the range is worth a warning


def nice_max_depth(depth_m: float) -> int:
    """The smallest of NICE_MAX_DEPTHS at or above `depth_m` (m), else `depth_m` rounded up."""
    return next((d for d in NICE_MAX_DEPTHS if d >= depth_m), math.ceil(depth_m))


def percentiles_text(p1: float, p50: float, p99: float) -> str:
    return f"{p1:.3g} / {p50:.3g} / {p99:.3g} m (1st / 50th / 99th percentile)"


def likely_fixes(
    depth_m: np.ndarray, depth_scale: float, min_depth: float, max_depth: float, own_units: bool = False
) -> list[str]:
    """Up to three flag changes that bring measured depths `depth_m` (m, read with `depth_scale`) to a plausible
    median and into [min_depth, max_depth], fewest changes first: --max-depth alone (never beyond
    MAX_SCENE_DEPTH_M), another --depth-scale of COMMON_DEPTH_SCALES, or both (the depth each gives is part of the
    text). `own_units`: a named dataset's reader decodes its units, so only --max-depth can change."""
    options: list[tuple[str | None, np.ndarray]] = [(None, depth_m)]
    if not own_units:
        raw = depth_m / depth_scale
        options += [
            (f"--depth-scale {spelling} ({meaning})", raw * scale)
            for spelling, scale, meaning in COMMON_DEPTH_SCALES
            if not math.isclose(scale, depth_scale, rel_tol=1e-6)
        ]
    fixes = []
    for scale_flag, depth in options if depth_m.size else []:
        p1, p50, p99 = np.percentile(depth, [1, 50, 99])
        if not PLAUSIBLE_MEDIAN_M[0] <= p50 <= PLAUSIBLE_MEDIAN_M[1]:
            continue
        flags = [scale_flag] if scale_flag else []
        if np.mean((depth >= min_depth) & (depth <= max_depth)) < 0.9:
            if nice_max_depth(p99) > MAX_SCENE_DEPTH_M:
                continue
            flags.append(f"--max-depth {nice_max_depth(p99)}")
        if flags:
            fixes.append((len(flags), f"{' '.join(flags)}: {percentiles_text(p1, p50, p99)}"))
    return [text for _, text in sorted(fixes, key=lambda fix: fix[0])[:3]]


def maps_in_other_units(medians: dict[int, float]) -> tuple[list[int], float]:
    """The maps (keys of `medians`, each map's median measured depth in m) whose depth is implausible for the
    list's unit, and the median (m) of the plausible maps' medians they are judged against.

    A map is in another unit when its median lies outside PLAUSIBLE_MEDIAN_M and OTHER_UNIT_RATIO or more times
    from that median. None is named when they are not a minority: then the list's unit is wrong as a whole.
    """
    low, high = PLAUSIBLE_MEDIAN_M
    plausible = [m for m in medians.values() if low <= m <= high]
    if not plausible:
        return [], math.nan
    reference = float(np.median(plausible))
    odd = [
        i for i, m in medians.items() if not low <= m <= high and max(m / reference, reference / m) >= OTHER_UNIT_RATIO
    ]
    return (odd if 2 * len(odd) < len(medians) else []), reference


def other_unit(median_m: float, reference_m: float, depth_scale: float, own_units: bool = False) -> str:
    """Why one map's depth (median `median_m`, m) is implausible beside its list's (`reference_m`), the units that
    would make it plausible, and the fix. `own_units`: a named dataset's reader decoded it."""
    text = (
        f"median depth {_metres(median_m)} m, where the list's other maps have {_metres(reference_m)} m: a map in "
        "another unit is ignored beyond the depth range, or trains on wrong depth"
    )
    if own_units:
        return f"{text}; is this file from another dataset? Remove the line (--skip-bad-samples skips it)"
    raw = median_m / depth_scale
    readings = sorted(  # the closest to the other maps first
        (abs(math.log(raw * scale / reference_m)), f"as {meaning} ({spelling} m) {raw * scale:.3g} m")
        for spelling, scale, meaning in COMMON_DEPTH_SCALES
        if PLAUSIBLE_MEDIAN_M[0] <= raw * scale <= PLAUSIBLE_MEDIAN_M[1]
    )
    guess = f"; its median read {', or '.join(text for _, text in readings)}" if readings else ""
    return (
        f"{text}{guess}. One --depth-scale ({format_depth_scale(depth_scale)} m per stored value) applies to every "
        "map of a list: store this map in the list's unit, or remove the line (--skip-bad-samples skips it)"
    )


def range_warnings(
    below: float, above: float, p1: float, p50: float, p99: float, min_depth: float, max_depth: float
) -> list[str]:
    """What is worth a warning about a list's measured depth (mean fractions per map below and above [min_depth,
    max_depth], percentiles, all m): much of it outside the range (never suggesting a --max-depth beyond
    MAX_SCENE_DEPTH_M), or depth that looks like inverse depth (disparity) or normalised depth, not metres."""
    warnings = []
    outside = f"{above:.0%} of the measured depth lies above --max-depth {max_depth:g} m and is ignored"
    if above >= WARN_OUTSIDE and p99 > MAX_SCENE_DEPTH_M:
        warnings.append(
            f"{outside}, with a 99th percentile of {p99:.3g} m, deeper than any camera scene: are some values in "
            "another unit, or a no-depth marker (e.g. 65535) that should be 0? Check --depth-scale"
        )
    elif above >= WARN_OUTSIDE:
        warnings.append(f"{outside} (99th percentile {p99:.3g} m): --max-depth {nice_max_depth(p99)}?")
    if below >= WARN_OUTSIDE:
        warnings.append(
            f"{below:.0%} of the measured depth lies below --min-depth {min_depth:g} m and is ignored (1st "
            f"percentile {p1:.3g} m): is --depth-scale right?"
        )
    if math.isfinite(max_depth) and p99 <= INVERSE_DEPTH_P99_M and max_depth >= 10 * p99:
        warnings.append(
            f"measured depth {percentiles_text(p1, p50, p99)} with --max-depth {max_depth:g} m: the maps look "
            "like inverse depth (disparity) or depth normalised to 0..1, saved as depth. Training needs depth in "
            "metres: convert disparity with depth = fx * baseline / disparity (or 1 / inverse depth); normalised "
            f"depth has no metric scale. If these scenes really lie within {p99:.3g} m, lower --max-depth to "
            f"{nice_max_depth(p99)}"
        )
    return warnings


def _metres(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"
