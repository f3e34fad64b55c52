"""Hypersim (Roberts et al., 2021): photorealistic indoor renderings, the usual Depth Anything V2 metric training set.

Layout (as downloaded): `ai_<volume>_<scene>/images/scene_cam_<camera>_final_preview/frame.<index>.tonemap.jpg` and
`ai_<volume>_<scene>/images/scene_cam_<camera>_geometry_hdf5/frame.<index>.depth_meters.hdf5`. The HDF5 'dataset'
holds the distance from the camera centre along each pixel's ray in metres (NaN where there is no geometry), NOT planar
depth: reading it as depth is wrong by up to 1/cos(half diagonal FOV) ~ 1.4x in the corners.

    python -m dataset.prepare hypersim --root DIR [--out dataset/splits/hypersim] [--val-fraction 0.05]
"""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import h5py
import numpy as np

from depth_anything_v2.geometry import make_intrinsics, scale_intrinsics

from ..filelist import format_line
from ..io import DataError
from ..protocol import EvalProtocol, NamedDataset
from .folders import folder_intrinsics

NAME = "hypersim"
MAX_DEPTH = 20.0
EVAL_PROTOCOL = EvalProtocol(crop="none", min_depth=1e-3, max_depth=20.0)
# The published Hypersim camera at 1024 x 768 (60 degree horizontal FOV), principal point at the image centre
# in OpenCV pixel-centre coordinates. A few scenes were rendered with non-standard cameras (the dataset's
# metadata_camera_parameters.csv); like upstream Depth Anything V2 we use the standard one everywhere.
NATIVE_SIZE = (1024, 768)
NATIVE_K = make_intrinsics(886.81, 886.81, 511.5, 383.5)
SPLIT_CSV = "metadata_images_split_scene_v1.csv"
_CSV_COLUMNS = ("scene_name", "camera_name", "frame_id", "included_in_public_release", "split_partition_name")


def intrinsics_for_size(width: int, height: int) -> np.ndarray:
    """(3, 3) K of the Hypersim camera for an image of width x height pixels (the 1024 x 768 camera resized)."""
    return scale_intrinsics(NATIVE_K, width / NATIVE_SIZE[0], height / NATIVE_SIZE[1])


def distance_to_depth(distance: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Planar z-depth from distance along the ray: z = d / |(x, y, 1)| with x = (u - cx) / fx, y = (v - cy) / fy.

    Args:
        distance: (H, W) distance from the camera centre, metres (invalid values stay invalid).
        K: (3, 3) intrinsics of the (H, W) image, pixels.

    Returns:
        (H, W) float32 planar depth in metres.
    """
    H, W = distance.shape
    x = (np.arange(W) - K[0, 2]) / K[0, 0]
    y = (np.arange(H) - K[1, 2]) / K[1, 1]
    ray_norm = np.sqrt(1.0 + x[None, :] ** 2 + y[:, None] ** 2)
    return (distance / ray_norm).astype(np.float32)


def read_hypersim_depth(path: str | Path) -> np.ndarray:
    """(H, W) float32 planar depth in metres from a `depth_meters.hdf5` (0 where NaN, inf or non-positive)."""
    try:
        with h5py.File(path, "r") as f:
            if "dataset" not in f:
                raise DataError(f"{path}: no 'dataset' in this HDF5 file (found {sorted(f)}); not a Hypersim depth")
            distance = f["dataset"][()].astype(np.float32)
    except OSError as err:
        raise DataError(f"{path}: cannot read HDF5 ({err})") from None
    if distance.ndim != 2:
        raise DataError(f"{path}: depth must be 2-D (H, W), got shape {distance.shape}")
    depth = distance_to_depth(distance, intrinsics_for_size(distance.shape[1], distance.shape[0]))
    depth[~np.isfinite(depth) | (depth <= 0)] = 0.0
    return depth


def scene_split(scene: str, val_fraction: float) -> str:
    """'val' or 'train' for a scene name, from a stable hash (CRC-32), so the split never depends on the walk."""
    return "val" if zlib.crc32(scene.encode()) % 10_000 < val_fraction * 10_000 else "train"


def read_split_csv(path: Path) -> dict[tuple[str, str, int], str | None]:
    """{(scene, camera, frame): partition ('train' | 'val' | 'test'), None if not in the public release}."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected Hypersim's {SPLIT_CSV})")
        return {
            (row["scene_name"], row["camera_name"], int(row["frame_id"])): (
                row["split_partition_name"] if row["included_in_public_release"].strip().lower() == "true" else None
            )
            for row in reader
        }


def scan(root: Path, val_fraction: float = 0.05, split_csv: Path | None = None) -> dict:
    """Walk a Hypersim root and pair every tonemapped image with its depth.

    The split comes from the official `metadata_images_split_scene_v1.csv` (`split_csv`, or found in `root`):
    train / val / test per frame, frames outside the public release skipped. Without it, whole scenes go to
    val by `scene_split` (about `val_fraction` of them). K is the published camera at each camera folder's
    image size (read once per folder).

    Returns:
        {'splits': {split: ['image depth intrinsics' lines, paths relative to root]}, 'intrinsics':
        {file name: (3, 3) K}, 'skipped': [(path relative to root, reason)]}.
    """
    split_csv = split_csv or (root / SPLIT_CSV if (root / SPLIT_CSV).is_file() else None)
    partitions = read_split_csv(split_csv) if split_csv else None
    splits: dict[str, list[str]] = {"train": [], "val": [], **({"test": []} if partitions else {})}
    intrinsics, skipped = {}, []
    for camera_dir in sorted(root.glob("ai_*/images/scene_cam_*_final_preview")):
        scene = camera_dir.parts[-3]
        camera = camera_dir.name[len("scene_") : -len("_final_preview")]
        frames = sorted(camera_dir.glob("frame.*.tonemap.jpg"))
        k_name = folder_intrinsics(frames, root, "hypersim", intrinsics_for_size, intrinsics, skipped)
        if k_name is None:
            continue
        geometry = camera_dir.parent / f"scene_{camera}_geometry_hdf5"
        for image in frames:
            frame = image.name.split(".")[1]
            depth = geometry / f"frame.{frame}.depth_meters.hdf5"
            if not depth.is_file():
                skipped.append((str(image.relative_to(root)), "no depth_meters.hdf5"))
                continue
            if partitions is None:
                split = scene_split(scene, val_fraction)
            else:
                key = (scene, camera, int(frame))
                split = partitions.get(key)
                if split not in splits:
                    reason = f"not in {split_csv.name}" if key not in partitions else "not in the public release"
                    skipped.append((str(image.relative_to(root)), reason if split is None else f"partition {split!r}"))
                    continue
            splits[split].append(
                format_line([str(image.relative_to(root)), str(depth.relative_to(root)), f"intrinsics/{k_name}"])
            )
    return {"splits": splits, "intrinsics": intrinsics, "skipped": skipped}


DATASET = NamedDataset(NAME, read_hypersim_depth, MAX_DEPTH, EVAL_PROTOCOL, scan)
