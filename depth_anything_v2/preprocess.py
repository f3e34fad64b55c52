"""The official Depth Anything V2 input pipeline for `infer_image`, and the matching map of intrinsics."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .configs import IMAGENET_MEAN, IMAGENET_STD, PATCH_SIZE


def _constrain_to_multiple(x: float, min_val: int, multiple: int) -> int:
    y = int(np.round(x / multiple) * multiple)
    if y < min_val:
        y = int(math.ceil(x / multiple) * multiple)
    return y


def lower_bound_size(height: int, width: int, target: int, multiple: int = PATCH_SIZE) -> tuple[int, int]:
    """Network input size (H, W) for an image: aspect ratio kept, both sides >= target, multiples of 14.

    The side that needs the larger scale factor reaches `target`; each side is rounded to the nearest
    multiple, or up when rounding would fall below `target` (official `Resize(..., resize_method='lower_bound')`).
    """
    scale = max(target / height, target / width)
    return _constrain_to_multiple(scale * height, target, multiple), _constrain_to_multiple(
        scale * width, target, multiple
    )


def prepare_image(bgr: np.ndarray, input_size: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """(h, w, 3) uint8 BGR -> (3, H, W) float32 RGB, resized (cubic) and ImageNet-normalized as upstream.

    Args:
        bgr: the image.
        input_size: short side of the network input; (H, W) = `lower_bound_size(h, w, input_size)`.
        size: (H, W) to resize to instead, aspect ratio not kept (a network with a fixed input size).
    """
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) BGR image, got shape {bgr.shape}")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) / 255.0
    H, W = size or lower_bound_size(image.shape[0], image.shape[1], input_size)
    image = cv2.resize(image, (W, H), interpolation=cv2.INTER_CUBIC)
    image = (image - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32)
