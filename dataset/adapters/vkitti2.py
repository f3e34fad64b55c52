"""Virtual KITTI 2 (Cabon et al., 2020): synthetic clones of KITTI drives, the usual outdoor metric training set.

Layout: `SceneXX/<variation>/frames/rgb/Camera_N/rgb_NNNNN.jpg`, `.../frames/depth/Camera_N/depth_NNNNN.png`
(16-bit centimetres, 65535 = the far plane, i.e. sky) and `SceneXX/<variation>/intrinsic.txt`. The official
archives unpack into separate `vkitti_2.0.3_rgb/`, `vkitti_2.0.3_depth/` and `vkitti_2.0.3_textgt/` folders;
files are matched by (scene, variation, camera, frame) wherever they are under the root, so both work.

    python -m dataset.prepare vkitti2 --root DIR [--out dataset/splits/vkitti2] [--val-scenes Scene20]
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from depth_anything_v2.geometry import make_intrinsics, scale_intrinsics

from ..filelist import format_line
from ..headers import read_image_header
from ..io import DataError
from ..protocol import EvalProtocol, NamedDataset

NAME = "vkitti2"
MAX_DEPTH = 80.0
EVAL_PROTOCOL = EvalProtocol(crop="none", min_depth=1e-3, max_depth=80.0)
FAR_PLANE_CM = 65535
# Every camera of every scene in the release (1242 x 375 images); used when a scene's intrinsic.txt is missing.
PUBLISHED_K = make_intrinsics(725.0087, 725.0087, 620.5, 187.0)
PUBLISHED_SIZE = (1242, 375)
VAL_VARIATION, VAL_CAMERA = "clone", "Camera_0"
_SCENE = re.compile(r"Scene\d+")


def read_vkitti2_depth(path: str | Path) -> np.ndarray:
    """(H, W) float32 depth in metres from a 16-bit centimetre png; the far plane (sky) becomes 0 (invalid)."""
    raw = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH)
    if raw is None:
        raise DataError(f"{path}: cannot read depth png")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DataError(f"{path}: VKITTI2 depth must be a single-channel 16-bit png, got {raw.dtype} {raw.shape}")
    depth = raw.astype(np.float32) * np.float32(0.01)
    depth[raw == FAR_PLANE_CM] = 0.0
    return depth


def read_vkitti2_intrinsics(path: str | Path) -> dict[int, dict[int, tuple[float, float, float, float]]]:
    """{camera id: {frame: (fx, fy, cx, cy)}} in pixels from an `intrinsic.txt`
    (header `frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]`, one row per frame and camera)."""
    table: dict[int, dict[int, tuple[float, float, float, float]]] = {}
    for number, text in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = text.split()
        if not fields or fields[0] == "frame":
            continue
        try:
            if len(fields) != 6:
                raise ValueError(f"expected 6 fields, found {len(fields)}")
            fx, fy, cx, cy = (float(v) for v in fields[2:])
            table.setdefault(int(fields[1]), {})[int(fields[0])] = (fx, fy, cx, cy)
        except ValueError as err:
            raise DataError(f"{path}:{number}: {err} in {text!r} (want 'frame cameraID fx fy cx cy')") from None
    return table


def _index(root: Path, kind: str, suffix: str) -> dict[tuple[str, str, str, int], Path]:
    """{(scene, variation, camera, frame): path} of `<kind>_NNNNN<suffix>` files in the frames/<kind> layout."""
    found = {}
    for path in sorted(root.rglob(f"{kind}_*{suffix}")):
        parts = path.relative_to(root).parts
        if len(parts) >= 6 and parts[-4:-2] == ("frames", kind) and _SCENE.fullmatch(parts[-6]):
            found.setdefault((parts[-6], parts[-5], parts[-2], int(path.stem.split("_")[-1])), path)
    return found


def scan(root: Path, val_scenes: tuple[str, ...] = ("Scene20",)) -> dict:
    """Walk a VKITTI2 root and pair every rgb frame with its depth and camera.

    Split: frames of `val_scenes` form val, one view per frame (variation 'clone', Camera_0); their other
    variations and cameras are held out (skipped), the other scenes are all train. K is written once per
    (scene, variation, camera) when constant over the frames, else once per frame.

    Returns:
        {'splits': {'train' | 'val': ['image depth intrinsics' lines relative to root]}, 'intrinsics':
        {file name: (3, 3) K}, 'skipped': [(path, reason)], 'notes': [str]}.
    """
    images, depths = _index(root, "rgb", ".jpg"), _index(root, "depth", ".png")
    tables = {(p.parts[-3], p.parts[-2]): p for p in sorted(root.rglob("intrinsic.txt"))}
    splits: dict[str, list[str]] = {"train": [], "val": []}
    intrinsics, skipped, notes, camera_files = {}, [], [], {}
    for key, image in sorted(images.items()):
        scene, variation, camera, frame = key
        if key not in depths:
            skipped.append((str(image.relative_to(root)), "no depth png"))
            continue
        if scene in val_scenes and (variation, camera) != (VAL_VARIATION, VAL_CAMERA):
            skipped.append((str(image.relative_to(root)), f"held out: only {VAL_VARIATION}/{VAL_CAMERA} of val scenes"))
            continue
        view = (scene, variation, camera)
        if view not in camera_files:
            camera_files[view] = _camera_intrinsics(view, image, tables, intrinsics, notes)
        k_name = camera_files[view].get(frame) or camera_files[view].get(None)
        if k_name is None:
            notes.append(f"{scene}/{variation}/{camera} frame {frame}: not in intrinsic.txt, using the published K")
            k_name = _published(image, intrinsics)
        split = "val" if scene in val_scenes else "train"
        splits[split].append(
            format_line([str(image.relative_to(root)), str(depths[key].relative_to(root)), f"intrinsics/{k_name}"])
        )
    return {"splits": splits, "intrinsics": intrinsics, "skipped": skipped, "notes": notes}


def published_intrinsics(width: int, height: int) -> np.ndarray:
    """PUBLISHED_K for images of `width` x `height` pixels (a resized copy: K scaled with the image)."""
    return scale_intrinsics(PUBLISHED_K, width / PUBLISHED_SIZE[0], height / PUBLISHED_SIZE[1])


def _published(image: Path, intrinsics: dict) -> str:
    """The file name of the published K at the size of `image` (read from its header), added to `intrinsics`."""
    width, height, _ = read_image_header(image)
    name = f"vkitti2_published_{width}x{height}.txt"
    intrinsics[name] = published_intrinsics(width, height)
    return name


def _camera_intrinsics(view: tuple[str, str, str], image: Path, tables: dict, intrinsics: dict, notes: list) -> dict:
    """{frame or None (all frames): K file name} for one (scene, variation, camera) whose first frame is `image`;
    fills `intrinsics`."""
    scene, variation, camera = view
    path = tables.get((scene, variation))
    rows = read_vkitti2_intrinsics(path).get(int(camera.split("_")[-1]), {}) if path else {}
    if not rows:
        notes.append(f"{scene}/{variation}/{camera}: no intrinsic.txt rows, using the published K")
        return {None: _published(image, intrinsics)}
    prefix = f"vkitti2_{scene}_{variation}_{camera}"
    if len(set(rows.values())) == 1:
        intrinsics[f"{prefix}.txt"] = make_intrinsics(*next(iter(rows.values())))
        return {None: f"{prefix}.txt"}
    files = {frame: f"{prefix}_{frame:05d}.txt" for frame in rows}
    intrinsics.update({files[frame]: make_intrinsics(*values) for frame, values in rows.items()})
    return files


DATASET = NamedDataset(NAME, read_vkitti2_depth, MAX_DEPTH, EVAL_PROTOCOL, scan)
