"""Synthetic RGB-D scenes of known metric size, seen through pinhole cameras with varied focal lengths.

Each scene is a box room (floor, ceiling, walls at random metric distances) with a few boxes on the floor,
ray-cast analytically. Textures are functions of the 3-D surface point with a fixed metric period, so the
apparent texture frequency depends on depth AND focal length: the camera is needed to read metric depth.

    python -m dataset.synthetic --out demo_data/scenes --n-train 160 --n-val 16 --width 160 --height 120
writes images/*.png, depths/*.npy (planar depth, metres), intrinsics/*.npy and splits/{train,val}.txt.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from depth_anything_v2.geometry import make_intrinsics

TEXTURE_PERIOD_M = 0.5


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation from angles in radians (y down, z forward)."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    R_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    R_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    R_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return R_yaw @ R_pitch @ R_roll


@dataclass
class Scene:
    """Axis-aligned boxes in world coordinates (metres); boxes[0] is the room (seen from inside).

    Attributes:
        boxes: (N, 2, 3) lower and upper corners.
        colors: (N, 6, 3) RGB base colour in [0, 1] per box face (face = 2 * axis + side).
        R: (3, 3) camera-to-world rotation; the camera sits at the origin.
    """

    boxes: np.ndarray
    colors: np.ndarray
    R: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator) -> Scene:
        width, depth, height = rng.uniform(3, 9), rng.uniform(3, 10), rng.uniform(2.4, 3.5)
        cam_height = rng.uniform(1.0, 1.8)
        left = rng.uniform(0.3, 0.7) * width
        room = np.array([[-left, cam_height - height, -1.0], [width - left, cam_height, depth]])
        boxes = [room]
        for _ in range(rng.integers(2, 5)):
            size = rng.uniform([0.3, 0.3, 0.3], [1.2, 1.5, 1.2])
            x = rng.uniform(room[0, 0] + 0.2, room[1, 0] - 0.2 - size[0])
            z = rng.uniform(1.0, max(1.1, depth - 0.2 - size[2]))
            boxes.append(np.array([[x, cam_height - size[1], z], [x + size[0], cam_height, z + size[2]]]))
        colors = rng.uniform(0.15, 0.95, size=(len(boxes), 6, 3))
        R = rotation(*np.radians(rng.uniform([-15, -12, -3], [15, 8, 3])))
        return cls(np.stack(boxes), colors, R)

    def raycast(self, K: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Planar depth (H, W) in metres and world points (H, W, 3) seen through K at each pixel centre."""
        v, u = np.mgrid[0:height, 0:width].astype(np.float64)
        rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1) @ self.R.T
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / rays
            room_lo, room_hi = self.boxes[0]
            t_room = np.where(rays > 0, room_hi * inv, room_lo * inv)
            t = np.nanmin(np.where(np.isfinite(t_room) & (t_room > 0), t_room, np.inf), axis=-1)
            for lo, hi in self.boxes[1:]:
                t1, t2 = lo * inv, hi * inv
                t_near = np.nanmax(np.minimum(t1, t2), axis=-1)
                t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
                hit = (t_far >= t_near) & (t_near > 0)
                t = np.where(hit & (t_near < t), t_near, t)
        return t.astype(np.float32), rays * t[..., None]

    def surface_distance(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For (..., 3) world points: distance (m) to the nearest surface, its box index and face index."""
        best = np.full(points.shape[:-1], np.inf)
        box_id = np.zeros(points.shape[:-1], dtype=int)
        face_id = np.zeros(points.shape[:-1], dtype=int)
        for b, (lo, hi) in enumerate(self.boxes):
            # Face index = 2 * axis + side: x_lo, x_hi, y_lo, y_hi, z_lo, z_hi.
            gaps = np.stack([np.abs(points - lo), np.abs(points - hi)], axis=-1).reshape(*points.shape[:-1], 6)
            dist = gaps.min(axis=-1)
            if b:  # an obstacle: outside points are measured to the box, not to its face planes
                outside = np.linalg.norm(np.maximum(np.maximum(lo - points, points - hi), 0), axis=-1)
                inside = np.all((points >= lo) & (points <= hi), axis=-1)
                dist = np.where(inside, dist, outside)
            closer = dist < best
            best, box_id = np.where(closer, dist, best), np.where(closer, b, box_id)
            face_id = np.where(closer, gaps.argmin(axis=-1), face_id)
        return best, box_id, face_id

    def color_at(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world points on surfaces -> (..., 3) RGB in [0, 1] (metric-period texture)."""
        _, box_id, face_id = self.surface_distance(points)
        axis = face_id // 2
        a = np.take_along_axis(points, ((axis + 1) % 3)[..., None], axis=-1)[..., 0]
        b = np.take_along_axis(points, ((axis + 2) % 3)[..., None], axis=-1)[..., 0]
        k = 2 * math.pi / TEXTURE_PERIOD_M
        pattern = 0.5 + 0.5 * np.sin(k * a) * np.sin(k * b)
        return self.colors[box_id, face_id] * (0.45 + 0.55 * pattern)[..., None]

    def render(self, K: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB image and (H, W) float32 planar depth in metres."""
        depth, points = self.raycast(K, width, height)
        rgb = np.clip(self.color_at(points) * 255 + 0.5, 0, 255).astype(np.uint8)
        return rgb, depth


def random_intrinsics(
    rng: np.random.Generator,
    width: int,
    height: int,
    hfov_range: tuple[float, float],
    principal_jitter: float = 0.03,
) -> np.ndarray:
    """K with a horizontal field of view drawn uniformly in `hfov_range` (degrees), principal point near the centre.

    Args:
        rng: random generator (draws the same numbers whatever the ranges, so scenes stay a function of the seed).
        width, height: image size in pixels.
        hfov_range: (min, max) horizontal field of view in degrees; equal bounds give one focal length.
        principal_jitter: the principal point is moved from the image centre by up to this fraction of the image
            size in x and y (0: exactly at the centre, so equal `hfov_range` bounds give one camera).
    """
    hfov = math.radians(rng.uniform(*hfov_range))
    f = (width / 2) / math.tan(hfov / 2)
    cx = (width - 1) / 2 + rng.uniform(-principal_jitter, principal_jitter) * width
    cy = (height - 1) / 2 + rng.uniform(-principal_jitter, principal_jitter) * height
    return make_intrinsics(f, f, cx, cy)


def write_synthetic_dataset(
    out_dir: str | Path,
    n_train: int,
    n_val: int,
    size: tuple[int, int] = (160, 120),
    hfov_range: tuple[float, float] = (30.0, 90.0),
    val_hfov_range: tuple[float, float] | None = None,
    seed: int = 0,
    principal_jitter: float = 0.03,
) -> Path:
    """Write a dataset in the generic layout; returns `out_dir`.

    Args:
        out_dir: target folder (images/, depths/, intrinsics/, splits/train.txt, splits/val.txt).
        n_train, n_val: number of scenes per split (one image each).
        size: (width, height) in pixels.
        hfov_range, val_hfov_range: horizontal field of view range in degrees for training / validation
            cameras (validation defaults to the training range).
        seed: scenes and cameras are a function of it.
        principal_jitter: largest principal point offset from the image centre, as a fraction of the image size
            (see `random_intrinsics`; 0 with equal `hfov_range` bounds: every training image through one camera).
    """
    out = Path(out_dir)
    for sub in ("images", "depths", "intrinsics", "splits"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng(seed)
    for split, count, fov in (("train", n_train, hfov_range), ("val", n_val, val_hfov_range or hfov_range)):
        lines = []
        for i in range(count):
            name = f"{split}_{i:05d}"
            scene = Scene.random(rng)
            K = random_intrinsics(rng, width, height, fov, principal_jitter)
            rgb, depth = scene.render(K, width, height)
            cv2.imwrite(str(out / "images" / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            np.save(out / "depths" / f"{name}.npy", depth)
            np.save(out / "intrinsics" / f"{name}.npy", K)
            lines.append(f"images/{name}.png depths/{name}.npy intrinsics/{name}.npy")
        (out / "splits" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic RGB-D dataset with intrinsics.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--n-train", type=int, default=160)
    parser.add_argument("--n-val", type=int, default=16)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--hfov", type=float, nargs=2, default=(30.0, 90.0), help="train hFOV range, degrees")
    parser.add_argument("--val-hfov", type=float, nargs=2, help="val hFOV range (default: --hfov)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = write_synthetic_dataset(
        args.out, args.n_train, args.n_val, (args.width, args.height), tuple(args.hfov),
        tuple(args.val_hfov) if args.val_hfov else None, args.seed,
    )  # fmt: skip
    print(f"wrote {args.n_train} train and {args.n_val} val scenes to {out}")


if __name__ == "__main__":
    main()
