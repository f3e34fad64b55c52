"""Depth visualisation without matplotlib: an embedded Spectral colour map and a side-by-side panel."""

from __future__ import annotations

import numpy as np

# ColorBrewer Spectral anchors, red to purple; matplotlib's "Spectral" is the linear ramp through them.
_SPECTRAL_ANCHORS = "9e0142 d53e4f f46d43 fdae61 fee08b ffffbf e6f598 abdda4 66c2a5 3288bd 5e4fa2".split()


def _spectral_lut() -> np.ndarray:
    anchors = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in _SPECTRAL_ANCHORS], dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(anchors))
    samples = np.linspace(0.0, 1.0, 256)
    rgb = np.stack([np.interp(samples, positions, anchors[:, c]) for c in range(3)], axis=-1)
    return np.round(rgb).astype(np.uint8)


SPECTRAL_RGB = _spectral_lut()


def colorize(
    values: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    reverse: bool = False,
    grayscale: bool = False,
) -> np.ndarray:
    """Map a (H, W) array to colours with the Spectral colour map (matplotlib's "Spectral", or "Spectral_r").

    Values are normalised to [0, 1] by [vmin, vmax] (default: min and max of the finite values, per image);
    with reverse=False the low end is red, with reverse=True the high end is. So metric depth (near = small) uses
    reverse=False and relative disparity (near = large) uses reverse=True, and near is red in both, as upstream.
    Non-finite pixels are black.

    Args:
        values: (H, W) depth in metres or relative disparity.
        vmin, vmax: normalisation range in the units of `values`.
        reverse: use the reversed map (Spectral_r).
        grayscale: grey levels instead of colours; the red end of the colour map is white.

    Returns:
        (H, W, 3) uint8 BGR, ready for cv2.imwrite.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"colorize expects an (H, W) array, got shape {values.shape}")
    finite = np.isfinite(values)
    if vmin is None or vmax is None:
        lo, hi = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 1.0)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    scale = vmax - vmin if vmax > vmin else 1.0
    t = np.clip((np.where(finite, values, vmin) - vmin) / scale, 0.0, 1.0)
    if reverse:
        t = 1.0 - t
    # Truncation as in upstream's `(x * 255).astype(np.uint8)` before the colour map lookup.
    index = (t * 255.0).astype(np.uint8)
    if grayscale:
        out = np.repeat((255 - index)[..., None], 3, axis=-1)
    else:
        out = SPECTRAL_RGB[index][..., ::-1]
    out[~finite] = 0
    return np.ascontiguousarray(out)


def side_by_side(image_bgr: np.ndarray, depth_bgr: np.ndarray, gap: int = 50) -> np.ndarray:
    """The image and its colourised depth next to each other with a white gap between them.

    Args:
        image_bgr: (H, W, 3) uint8.
        depth_bgr: (H, W, 3) uint8, same size as the image.
        gap: width of the white separator in pixels.

    Returns:
        (H, 2 W + gap, 3) uint8 BGR.
    """
    if image_bgr.shape != depth_bgr.shape or image_bgr.ndim != 3:
        raise ValueError(f"image {image_bgr.shape} and depth {depth_bgr.shape} must both be (H, W, 3) of one size")
    separator = np.full((image_bgr.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([image_bgr.astype(np.uint8), separator, depth_bgr.astype(np.uint8)], axis=1)


def evaluation_panel(
    image: np.ndarray, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, max_error: float = 0.5
) -> np.ndarray:
    """One validation image for TensorBoard: image | predicted depth | true depth | relative error.

    Prediction and truth share one colour range (the true depth's 1st to 99th percentile), so a wrong scale shows
    as a colour shift; the error |pred - gt| / gt runs from 0 (blue) to `max_error` (red). Pixels without valid
    ground truth are black in the truth and error panels.

    Args:
        image: (H, W, 3) uint8 RGB at the ground truth's size.
        pred, gt: (H, W) depth in metres.
        valid: (H, W) bool, valid ground truth.
        max_error: relative error at the top of its colour range.

    Returns:
        (H, 4 W + 3 gaps, 3) uint8 RGB.
    """
    values = gt[valid] if valid.any() else np.array([0.0, 1.0])
    lo, hi = np.percentile(values, [1, 99])
    truth = np.where(valid, gt, np.nan)
    error = np.where(valid, np.abs(pred - gt) / np.maximum(gt, 1e-6), np.nan)
    panels = [
        colorize(pred, lo, hi)[..., ::-1],
        colorize(truth, lo, hi)[..., ::-1],
        colorize(error, 0.0, max_error, reverse=True)[..., ::-1],
    ]
    gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
    parts = [image.astype(np.uint8)]
    for panel in panels:
        parts += [gap, panel]
    return np.ascontiguousarray(np.concatenate(parts, axis=1))
