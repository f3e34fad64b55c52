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


OFFCENTRE_FLAG = "--allow-offcentre-principal-point"
# Largest distance of the principal point from the image centre, as a fraction of the side, for K of a camera's own
# image: real lenses sit within a few percent, a crop that keeps most of the frame within about 15 %. K of an image
# 1.4x larger or 1.7x smaller than the one it is given for (cx about 1.4 * W / 2) lies beyond it.
MAX_PRINCIPAL_OFFSET = 0.2
# With OFFCENTRE_FLAG (crops, shifted lenses): up to a quarter of the side beyond an edge.
CROP_PRINCIPAL_OFFSET = 0.75


def intrinsics_problem(
    K: object, width: int, height: int, allow_offcentre: bool = False, offcentre_fix: str = f"pass {OFFCENTRE_FLAG}"
) -> str | None:
    """None if K is a plausible pinhole K for a width x height image, else what is wrong and the likely cause.

    On top of `validate_intrinsics`: no skew; a horizontal and vertical field of view between about 1 and 170
    degrees (fx, fy between 0.04 and 50 times the image side): K in millimetres (fx = 3.9 for a 640 px image) or
    normalised by the image size (fx = 0.9) falls below; fx / fy within 1/2..2; a principal point at most
    MAX_PRINCIPAL_OFFSET of the side from the image centre ((W - 1) / 2, (H - 1) / 2), which K of an image of another
    size misses, or with `allow_offcentre` (a crop, a shifted lens) at most CROP_PRINCIPAL_OFFSET.

    Args:
        K: (3, 3) intrinsics in pixels of the image.
        width, height: the image's size in pixels.
        allow_offcentre: accept a principal point far from the centre (up to a quarter of the side outside).
        offcentre_fix: how the caller's user allows an off-centre principal point, ending that message.
    """
    problem = validate_intrinsics(K)
    if problem:
        return problem
    K = np.asarray(K, dtype=np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if K[0, 1] != 0 or K[1, 0] != 0:
        return (
            f"K has skew or shear terms ({K[0, 1]:g}, {K[1, 0]:g}); only K = [[fx,0,cx],[0,fy,cy],[0,0,1]] is supported"
        )
    if max(fx, fy) <= 2 and max(abs(cx), abs(cy)) <= 2:
        return (
            f"fx={fx:g}, fy={fy:g}, cx={cx:g}, cy={cy:g} look normalised by the image size; K must be in pixels "
            f"(multiply fx and cx by the width {width}, fy and cy by the height {height})"
        )
    for name, f, side in (("fx", fx, width), ("fy", fy, height)):
        if f < 0.04 * side:
            return (
                f"{name}={f:g} px is implausibly small for an image {side} px across (a field of view over 170 "
                "degrees): is K in millimetres? Convert with f_px = f_mm * image width px / sensor width mm"
            )
        if f > 50 * side:
            return (
                f"{name}={f:g} px is implausibly large for an image {side} px across (a field of view under 1 degree)"
            )
    if not 0.5 <= fx / fy <= 2:
        return f"fx={fx:g} and fy={fy:g} differ by more than 2x: swapped or of different images?"
    return _principal_point_problem(cx, cy, width, height, allow_offcentre, offcentre_fix)


def _principal_point_problem(
    cx: float, cy: float, width: int, height: int, allow_offcentre: bool, offcentre_fix: str
) -> str | None:
    bound = CROP_PRINCIPAL_OFFSET if allow_offcentre else MAX_PRINCIPAL_OFFSET
    for name, c, side in (("cx", cx, width), ("cy", cy, height)):
        offset = abs(c - (side - 1) / 2) / side
        if offset <= bound:
            continue
        if offset > CROP_PRINCIPAL_OFFSET:
            where = f"lies far outside the image ({side} px across)"
        elif offset > 0.5:
            where = f"lies outside the image ({side} px across)"
        else:
            where = f"lies {offset:.0%} of the image's {side} px from its centre {(side - 1) / 2:g}"
        guess = f"about {2 * cx + 1:.0f} x {2 * cy + 1:.0f} px if the principal point is central"
        message = f"{name}={c:g} {where}: is K for an image of another size ({guess})?"
        if allow_offcentre:
            return f"{message} Even for a crop, at most {CROP_PRINCIPAL_OFFSET - 0.5:.0%} of the side beyond an edge"
        return (
            f"{message} The principal point of a camera's own image lies within {MAX_PRINCIPAL_OFFSET:.0%} of the "
            f"side from its centre; if this K is right (a crop, a shifted lens), {offcentre_fix}"
        )
    return None


def unproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W) planar depth in metres and K -> (H, W, 3) camera points (X, Y, Z) in metres."""
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    z = depth.astype(np.float64)
    return np.stack([x * z, y * z, z], axis=-1)
