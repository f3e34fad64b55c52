"""Coloured point clouds as binary PLY files (metres, camera axes x right, y down, z forward)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_PLY_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def write_ply(path: str | Path, points: np.ndarray, colors: np.ndarray) -> None:
    """Binary little-endian PLY of (N, 3) points (metres) with (N, 3) uint8 RGB colours."""
    vertices = np.empty(len(points), dtype=_PLY_DTYPE)
    for i, name in enumerate("xyz"):
        vertices[name] = points[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        vertices[name] = colors[:, i]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vertices.tobytes())


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read what `write_ply` wrote: ((N, 3) float32 points, (N, 3) uint8 colours)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    if header[1] != "format binary_little_endian 1.0":
        raise ValueError(f"{path}: only binary little-endian PLY is supported")
    count = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    vertices = np.frombuffer(data[end:], dtype=_PLY_DTYPE, count=count)
    points = np.stack([vertices[n] for n in "xyz"], axis=-1)
    colors = np.stack([vertices[n] for n in ("red", "green", "blue")], axis=-1)
    return points, colors
