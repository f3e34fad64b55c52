"""Pictures and files of one depth map besides the raw ones of `inference.raw_depth`: a grayscale PNG, coloured point
clouds (full and a viewer preview), a colour bar.

Depth maps are (H, W) float32: metres for a metric model, relative disparity (larger is nearer) otherwise.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from depth_anything_v2.geometry import unproject
from util.ply import write_ply
from util.vis import colorize


def finite_range(depth: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values, (0, 1) if there are none: the range `colorize` normalises by."""
    finite = depth[np.isfinite(depth)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def median_depth(depth: np.ndarray) -> float:
    """Median of the finite positive values (NaN if there are none), in the units of `depth`."""
    valid = depth[np.isfinite(depth) & (depth > 0)]
    return float(np.median(valid)) if valid.size else float("nan")


def colour_depth(depth: np.ndarray, metric: bool, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB Spectral picture of a depth map, near red for both kinds of model (as `run.py`)."""
    return colorize(depth, vmin, vmax, reverse=not metric)[..., ::-1]


def write_grayscale_png(path: str | Path, depth: np.ndarray, metric: bool) -> None:
    """8-bit grey PNG normalised to the map's own range: near is white."""
    grey = colorize(depth, reverse=not metric, grayscale=True)[..., 0]
    if not cv2.imwrite(str(path), grey):
        raise OSError(f"{path}: could not be written")


def point_cloud(depth: np.ndarray, K: np.ndarray, image_bgr: np.ndarray, stride: int = 1) -> tuple:
    """Camera points of the valid pixels (x right, y down, z forward, metres) and their RGB colours.

    Args:
        depth: (H, W) metric planar depth.
        K: (3, 3) intrinsics in pixels of `depth`.
        image_bgr: (H, W, 3) uint8, the colours.
        stride: keep every stride-th pixel in each direction.

    Returns:
        ((N, 3) float32 points, (N, 3) uint8 RGB colours).
    """
    points = unproject(depth, K)[::stride, ::stride].reshape(-1, 3)
    colors = image_bgr[::stride, ::stride, ::-1].reshape(-1, 3)
    valid = np.isfinite(points).all(axis=1) & (points[:, 2] > 0)
    return points[valid].astype(np.float32), np.ascontiguousarray(colors[valid])


def write_point_clouds(
    path: str | Path, preview_path: str | Path, depth: np.ndarray, K: np.ndarray, image_bgr: np.ndarray, preview: int
) -> None:
    """The full point cloud (camera axes) and a preview of at most about `preview` points for a 3D viewer.

    The preview has every axis negated (a point reflection through the camera centre): that is how the page's viewer
    (Gradio's Model3D, Babylon.js, with its camera at alpha -90, beta 90 degrees) shows the scene upright,
    unmirrored and from the camera's side; checked in a browser with an image that is red left, green right.
    """
    write_ply(path, *point_cloud(depth, K, image_bgr))
    stride = max(1, int(np.ceil(np.sqrt(depth.size / preview))))
    points, colors = point_cloud(depth, K, image_bgr, stride)
    write_ply(preview_path, points * np.float32(-1.0), colors)


def _decimals(step: float) -> int:
    """Decimals that tell labels `step` apart (0 to 4)."""
    return int(np.clip(1 - np.floor(np.log10(step)), 0, 4)) if step > 0 else 2


def colour_bar(vmin: float, vmax: float, metric: bool, width: int = 640, ticks: int = 5) -> np.ndarray:
    """(56, width, 3) uint8 RGB strip of the colour map with `ticks` labels: metres, or disparity marked near/far.

    The colours match `colour_depth` with the same vmin and vmax (metric: vmin is near and red; relative: vmax is).
    """
    margin, bar_height, height = 30, 22, 56
    ramp = np.linspace(vmin, vmax, width - 2 * margin)[None].repeat(bar_height, axis=0)
    picture = np.full((height, width, 3), 255, dtype=np.uint8)
    picture[4 : 4 + bar_height, margin : width - margin] = colour_depth(ramp, metric, vmin, vmax)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.42
    step = (vmax - vmin) / (ticks - 1)
    for i in range(ticks):
        x = margin + round(i * (width - 2 * margin - 1) / (ticks - 1))
        text = f"{vmin + step * i:.{_decimals(step)}f}{' m' if metric else ''}"
        if not metric and i in (0, ticks - 1):
            text = f"{text} ({'far' if i == 0 else 'near'})"
        (text_width, _), _ = cv2.getTextSize(text, font, scale, 1)
        left = int(np.clip(x - text_width // 2, 0, width - text_width))
        cv2.line(picture, (x, 4 + bar_height), (x, 8 + bar_height), (0, 0, 0), 1)
        cv2.putText(picture, text, (left, height - 10), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return picture
