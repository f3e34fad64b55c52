"""Depth units: `--depth-scale` values (numbers or fractions) and the usual encodings of stored depth."""

from __future__ import annotations

import argparse
import math
from fractions import Fraction

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
