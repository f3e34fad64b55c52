"""Checksums of saved checkpoints: a damaged file is refused instead of loading silently different weights.

Our checkpoints store, under the key `checksum`, a CRC-32 of everything else they hold: every tensor's dtype,
shape and bytes, and every other value's repr, in the order the dict holds them (pickling keeps that order).
`read_checkpoint` recomputes it on every load. A file without one (an official release, or ours from before
checksums) is a zip archive whose records each carry a CRC-32 written by `torch.save`; those are checked instead.

CRC-32 detects accidental damage (a zeroed block, a flipped bit, a truncated copy), not deliberate tampering; it
costs a small fraction of the time it takes to write or read the same bytes (measured in docs/RUNS.md).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import torch

CHECKSUM_KEY = "checksum"
_ALGORITHM = "crc32"


def _update(crc: int, value: object) -> int:
    """`crc` extended by one value of a checkpoint, recursively."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        crc = zlib.crc32(f"T{value.dtype}{tuple(value.shape)}".encode(), crc)
        return zlib.crc32(memoryview(tensor.view(torch.uint8).numpy()), crc)
    if isinstance(value, dict):
        crc = zlib.crc32(f"D{len(value)}".encode(), crc)
        for key, item in value.items():
            crc = _update(zlib.crc32(f"K{key!r}".encode(), crc), item)
        return crc
    if isinstance(value, (list, tuple)):
        crc = zlib.crc32(f"L{len(value)}".encode(), crc)
        for item in value:
            crc = _update(crc, item)
        return crc
    return zlib.crc32(f"V{value!r}".encode(), crc)


def content_checksum(obj: dict) -> str:
    """'crc32:<8 hex digits>' of everything in `obj` except its own checksum entry."""
    crc = 0
    for key, value in obj.items():
        if key != CHECKSUM_KEY:
            crc = _update(zlib.crc32(f"K{key!r}".encode(), crc), value)
    return f"{_ALGORITHM}:{crc:08x}"


def with_checksum(obj: dict) -> dict:
    """A shallow copy of `obj` with its checksum added (what `torch.save` should write)."""
    return {**{k: v for k, v in obj.items() if k != CHECKSUM_KEY}, CHECKSUM_KEY: content_checksum(obj)}


def _archive_problem(path: Path) -> str | None:
    """The first zip record of `path` whose bytes do not match the CRC-32 its header holds, or None (zipfile
    compares them when a record is read to its end)."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.CRC == 0 and info.file_size > 0:
                continue  # written without CRCs (torch.serialization.set_crc32_options(False))
            try:
                with archive.open(info) as record:
                    while record.read(1 << 24):
                        pass
            except zipfile.BadZipFile:
                return f"record {info.filename} does not match the CRC-32 in its header"
    return None


def checksum_problem(path: str | os.PathLike, obj: object) -> str | None:
    """Why the checkpoint read from `path` into `obj` is damaged, or None when its checksums match.

    Args:
        path: the file `obj` was read from (its zip records are checked when `obj` holds no checksum).
        obj: what `torch.load` returned.

    Returns:
        A sentence naming both checksums and the fix, or None.
    """
    stored = obj.get(CHECKSUM_KEY) if isinstance(obj, dict) else None
    if isinstance(stored, str):
        computed = content_checksum(obj)
        if computed == stored:
            return None
        return (
            f"checksum mismatch: the file is damaged (stored {stored}, computed {computed} from its contents); "
            "use another copy (a run folder keeps the checkpoint before latest.pth as previous.pth)"
        )
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return None
    problem = _archive_problem(path)
    return None if problem is None else f"checksum mismatch: the file is damaged ({problem}); re-download or re-save it"
