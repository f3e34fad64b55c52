"""Raw depth files of run.py and run_video.py: float32 .npy and 16-bit PNG.

    write_raw_depth(Path("out/photo"), depth, metric=True, numpy=True, png16=True)
    # -> out/photo.npy (float32) and out/photo.depth16.png (uint16 millimetres, 0 = invalid)
    depth = read_png16("out/photo.depth16.png")  # float32 metres again (to the millimetre)

16-bit PNG: metric depth in millimetres, so up to 65.535 m (deeper pixels are stored as 65535), 0 where the
depth is invalid (not finite or not positive); a valid depth under 0.5 mm is stored as 1, never as 0. Relative
disparity has no unit: it is scaled so that its maximum is 65535 (0 stays 0) and the scale goes beside the PNG,
in <name>.depth16.json ({"scale": s}: disparity = value * s).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

PNG16_SUFFIX = ".depth16.png"
SCALE_SUFFIX = ".depth16.json"
MAX_VALUE = int(np.iinfo(np.uint16).max)


def write_png16(base: Path, depth: np.ndarray, metric: bool) -> Path:
    """Write `base` + ".depth16.png" (and the scale of a relative map in `base` + ".depth16.json").

    Args:
        base: output path without suffix, e.g. out/photo.
        depth: (H, W) metres (metric) or relative disparity.
        metric: millimetres if True, else scaled disparity.

    Returns:
        The PNG's path.
    """
    png, scale_file = Path(f"{base}{PNG16_SUFFIX}"), Path(f"{base}{SCALE_SUFFIX}")
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    if metric:
        per_unit = 1000.0
        scale_file.unlink(missing_ok=True)  # a stale scale of a relative map would misread this PNG
    else:
        per_unit = MAX_VALUE / (depth[valid].max() if valid.any() else 1.0)
        meaning = "disparity = value * scale; 0 = invalid"
        scale_file.write_text(json.dumps({"scale": 1.0 / per_unit, "meaning": meaning}) + "\n")
    values = np.clip(np.round(np.where(valid, depth, 0.0) * per_unit), 1, MAX_VALUE)
    if not cv2.imwrite(str(png), np.where(valid, values, 0).astype(np.uint16)):
        raise OSError(f"{png}: could not be written")
    return png


def read_png16(path: str | Path) -> np.ndarray:
    """(H, W) float32 depth of a `write_png16` PNG: metres, or disparity with a .depth16.json beside it; 0: invalid."""
    path = Path(path)
    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if values is None or values.dtype != np.uint16 or values.ndim != 2:
        raise ValueError(f"{path}: not a single-channel 16-bit PNG")
    base = path.name[: -len(PNG16_SUFFIX)] if path.name.endswith(PNG16_SUFFIX) else path.stem
    scale_file = path.with_name(base + SCALE_SUFFIX)
    scale = json.loads(scale_file.read_text())["scale"] if scale_file.is_file() else 0.001
    return (values * scale).astype(np.float32)


def write_raw_depth(base: Path, depth: np.ndarray, metric: bool, numpy: bool, png16: bool) -> None:
    """`base`.npy (float32, as predicted) if `numpy`, and the 16-bit PNG of `write_png16` if `png16`."""
    if numpy:
        np.save(f"{base}.npy", np.asarray(depth, dtype=np.float32))
    if png16:
        write_png16(base, depth, metric)
