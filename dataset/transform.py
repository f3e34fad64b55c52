"""Joint image / depth / intrinsics transforms. Every geometric step updates K (OpenCV pixel centres).

Training view = resize (short side to the crop) -> random zoom -> random crop -> horizontal flip, composed
into ONE axis-aligned affine map of pixel centres u' = a u + b and applied with a single warp (fast, and K is
exactly A K). The zoom (calibrated samples only) multiplies the focal length by z ~ logU(zoom_range) while
metric depth stays unchanged: z > 1 crops a window and enlarges it, z < 1 shrinks the image and pads it.
Depth is resampled with nearest neighbour, so valid and invalid pixels never mix; padding is invalid.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from depth_anything_v2.configs import IMAGENET_MEAN, IMAGENET_STD
from depth_anything_v2.geometry import affine_intrinsics, flip_intrinsics, scale_intrinsics
from depth_anything_v2.preprocess import prepare_image

_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
_STD = np.array(IMAGENET_STD, dtype=np.float32)
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as cv2.COLOR_RGB2GRAY
_PAD_RGB = tuple(float(255 * m) for m in IMAGENET_MEAN)  # padding normalizes to 0


@dataclass
class PixelAffine:
    """u' = ax u + bx, v' = ay v + by (pixel centres), with output size (height, width)."""

    ax: float
    bx: float
    ay: float
    by: float
    height: int
    width: int

    def matrix(self) -> np.ndarray:
        return np.array([[self.ax, 0.0, self.bx], [0.0, self.ay, self.by]])


def normalize_image(rgb: np.ndarray, gain: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 ImageNet-normalized values of clip(gain * rgb + offset, 0, 255).

    The colour affine, the clipping and the normalization are one 256-entry lookup table per channel, written
    straight into the channel-first output: no float arithmetic on the image and a single large allocation.
    """
    values = np.clip(np.arange(256, dtype=np.float32) * np.float32(gain) + np.float32(offset), 0, 255)
    luts = (values[None, :] * np.float32(1 / 255) - _MEAN[:, None]) / _STD[:, None]
    out = np.empty((3, *rgb.shape[:2]), dtype=np.float32)
    for c, channel in enumerate(cv2.split(rgb)):
        cv2.LUT(channel, luts[c], dst=out[c])
    return out


def sample_train_affine(
    height: int, width: int, crop: tuple[int, int], zoom: float, rng: np.random.Generator
) -> PixelAffine:
    """Resize to cover the crop, zoom by `zoom` at a random position, random-crop to crop = (h, w)."""
    crop_h, crop_w = crop
    scale = max(crop_h / height, crop_w / width)
    virtual_h, virtual_w = max(crop_h, round(height * scale)), max(crop_w, round(width * scale))
    sx, sy = virtual_w / width, virtual_h / height
    offsets = []
    for virtual, s in ((virtual_w, sx), (virtual_h, sy)):
        # Zoom shift t keeps the zoomed image covering the view (z >= 1) or inside it (z < 1).
        a, b = 0.5 * zoom - 0.5, virtual - 0.5 - zoom * (virtual - 0.5)
        t = rng.uniform(min(a, b), max(a, b))
        offsets.append(zoom * (0.5 * s - 0.5) + t)
    x0 = rng.integers(0, virtual_w - crop_w + 1)
    y0 = rng.integers(0, virtual_h - crop_h + 1)
    return PixelAffine(zoom * sx, offsets[0] - x0, zoom * sy, offsets[1] - y0, crop_h, crop_w)


def warp_view(
    image: np.ndarray, depth: np.ndarray, affine: PixelAffine, teacher: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Apply the affine: image bilinear (area pre-shrink for strong reduction), depth nearest, padding invalid.

    Returns:
        image (h, w, 3) uint8, depth (h, w) float32 (0 where invalid or padded), image_valid (h, w) bool
        (False on padding), and the warped `teacher` map if given (nearest, like depth).
    """
    size = (affine.width, affine.height)
    src = image
    matrix = affine.matrix()
    k = int(1 / (2 * min(affine.ax, affine.ay)))
    if k >= 2:
        # Strong reduction: average k x k blocks first (exact centre mapping u_k = (u + 0.5) / k - 0.5), so
        # the bilinear warp does not alias.
        H, W = image.shape[:2]
        src = cv2.resize(image[: H - H % k, : W - W % k], (W // k, H // k), interpolation=cv2.INTER_AREA)
        matrix = np.array(
            [
                [affine.ax * k, 0.0, affine.ax * (0.5 * k - 0.5) + affine.bx],
                [0.0, affine.ay * k, affine.ay * (0.5 * k - 0.5) + affine.by],
            ]
        )
    out = cv2.warpAffine(
        src, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=_PAD_RGB
    )
    nearest = {"flags": cv2.INTER_NEAREST, "borderMode": cv2.BORDER_CONSTANT, "borderValue": 0}
    out_depth = cv2.warpAffine(depth, affine.matrix(), size, **nearest)
    out_teacher = None if teacher is None else cv2.warpAffine(teacher, affine.matrix(), size, **nearest)
    H, W = image.shape[:2]
    u = (np.arange(affine.width) - affine.bx) / affine.ax
    v = (np.arange(affine.height) - affine.by) / affine.ay
    image_valid = ((v >= -0.5) & (v <= H - 0.5))[:, None] & ((u >= -0.5) & (u <= W - 0.5))[None, :]
    out_depth[~image_valid] = 0.0
    return out, out_depth, image_valid, out_teacher


def hflip(arrays: list[np.ndarray | None], K: np.ndarray, width: int) -> tuple[list, np.ndarray]:
    """Flip (h, w, ...) arrays left-right and update K (cx -> W - 1 - cx)."""
    return [None if a is None else _flip_lr(a) for a in arrays], flip_intrinsics(K, width)


def _flip_lr(array: np.ndarray) -> np.ndarray:
    # cv2.flip is several times faster than copying a reversed numpy view; OpenCV has no bool, so masks go as uint8.
    if array.dtype == bool:
        return cv2.flip(array.view(np.uint8), 1).view(bool)
    return cv2.flip(array, 1)


def jitter_normalize(rgb: np.ndarray, rng: np.random.Generator, strength: float = 0.1) -> np.ndarray:
    """Random saturation, contrast and brightness (factors 1 +- strength), then `normalize_image`; K unchanged.

    Saturation blends each pixel with its luma (one 3x3 colour matrix, uint8); contrast (about the image mean)
    and brightness are folded into the normalization table.
    """
    saturation, contrast, brightness = 1 + rng.uniform(-strength, strength, size=3)
    blend = saturation * np.eye(3) + (1 - saturation) * _LUMA[None, :]
    rgb = cv2.transform(rgb, blend.astype(np.float32))
    mean = sum(cv2.mean(rgb)[:3]) / 3
    return normalize_image(rgb, contrast, mean * (brightness - contrast))


def train_view(
    image: np.ndarray,
    depth: np.ndarray,
    K: np.ndarray,
    crop: tuple[int, int],
    zoom: float,
    flip: bool,
    rng: np.random.Generator,
    teacher: np.ndarray | None = None,
    jitter: bool = True,
) -> dict:
    """One augmented training view. Returns numpy arrays: image (3, h, w) normalized, depth, image_valid,
    K (3, 3) for the returned pixels, and `teacher` (the warped cached teacher map, or None)."""
    affine = sample_train_affine(image.shape[0], image.shape[1], crop, zoom, rng)
    rgb, depth, image_valid, teacher = warp_view(image, depth, affine, teacher)
    K = affine_intrinsics(K, affine.ax, affine.bx, affine.ay, affine.by)
    if flip:
        (rgb, depth, image_valid, teacher), K = hflip([rgb, depth, image_valid, teacher], K, affine.width)
    net = jitter_normalize(rgb, rng) if jitter else normalize_image(rgb)
    if not image_valid.all():  # padding is exactly 0 after normalization, jittered or not
        net[:, ~image_valid.any(axis=1)] = 0.0
        net[:, :, ~image_valid.any(axis=0)] = 0.0
    return {"image": net, "depth": depth, "image_valid": image_valid, "K": K, "teacher": teacher}


def val_view(image: np.ndarray, K: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation input exactly as `infer_image` builds it (aspect kept, lower bound `size`, multiples of 14,
    cubic): ((3, H, W) float32, K for those pixels)."""
    net = prepare_image(np.ascontiguousarray(image[..., ::-1]), size)
    H, W = net.shape[1:]
    return net, scale_intrinsics(K, W / image.shape[1], H / image.shape[0])


__all__ = [
    "PixelAffine",
    "hflip",
    "jitter_normalize",
    "normalize_image",
    "sample_train_affine",
    "train_view",
    "val_view",
    "warp_view",
]
