"""Pinhole geometry in the OpenCV pixel convention (the centre of pixel (u, v) is at integer (u, v)).

A camera point (X, Y, Z) (x right, y down, z forward, metres) projects to u = fx X/Z + cx, v = fy Y/Z + cy.
Every image operation is an axis-aligned affine map u' = a u + b of pixel centres, and K' = A K with
A = [[ax, 0, bx], [0, ay, by], [0, 0, 1]]; the helpers below are its special cases.
"""

from __future__ import annotations

import numpy as np


def make_intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) float64 K from focal lengths and principal point in pixels."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def canonical_intrinsics(height: int, width: int) -> np.ndarray:
    """(3, 3) float64 stand-in K for an image without one: focal max(H, W) px, principal point at the centre.

    The one "no camera" K of the repo: datasets fill it in for uncalibrated samples and the model uses it where
    `has_intrinsics` is False (where the camera encoder replaces it by its learned null camera).
    """
    f = float(max(height, width))
    return make_intrinsics(f, f, (width - 1) / 2, (height - 1) / 2)


def affine_intrinsics(K: np.ndarray, ax: float, bx: float, ay: float, by: float) -> np.ndarray:
    """K after the pixel map u' = ax u + bx, v' = ay v + by (ax, ay > 0)."""
    A = np.array([[ax, 0.0, bx], [0.0, ay, by], [0.0, 0.0, 1.0]])
    return A @ np.asarray(K, dtype=np.float64)


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K after resizing the image by (sx, sy): pixel edges scale, so centres map as u' = sx (u + 0.5) - 0.5."""
    return affine_intrinsics(K, sx, 0.5 * sx - 0.5, sy, 0.5 * sy - 0.5)


def crop_intrinsics(K: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """K after cropping with the top-left kept pixel at (x0, y0)."""
    return affine_intrinsics(K, 1.0, -x0, 1.0, -y0)


def flip_intrinsics(K: np.ndarray, width: int) -> np.ndarray:
    """K after a horizontal flip of an image `width` pixels wide: cx -> W - 1 - cx, cy unchanged.

    The flipped image is the view of the mirrored scene, which a pinhole with positive fx describes.
    """
    K = np.array(K, dtype=np.float64)
    K[0, 2] = width - 1 - K[0, 2]
    return K


def validate_intrinsics(K: object) -> str | None:
    """None if K is a finite 3x3 [[fx,0,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0, else what is wrong."""
    K = np.asarray(K, dtype=np.float64) if np.ndim(K) else np.asarray([])
    if K.shape != (3, 3):
        return f"intrinsics must be a 3x3 matrix, got shape {K.shape}"
    if not np.isfinite(K).all():
        return "intrinsics contain NaN or inf"
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        return f"focal lengths must be positive, got fx={K[0, 0]:g}, fy={K[1, 1]:g}"
    if not np.allclose(K[2], [0.0, 0.0, 1.0]):
        return f"last row must be [0, 0, 1], got {K[2].tolist()}"
    return None


def unproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W) planar depth in metres and K -> (H, W, 3) camera points (X, Y, Z) in metres."""
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    z = depth.astype(np.float64)
    return np.stack([x * z, y * z, z], axis=-1)
