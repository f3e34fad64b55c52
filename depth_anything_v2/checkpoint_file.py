"""One checkpoint file: read it safely, find the model weights inside, and what it says about the model.

`read_checkpoint_file` reads a .pth/.pt with `torch.load(..., weights_only=True)` (a file that holds code is
refused, never run) or a .safetensors file, and names what a file that is not a checkpoint is instead.
`extract_state_dict` accepts an official Depth Anything V2 state dict, our training checkpoints
(`{'model': ..., 'model_config': ...}`), a DINOv2 hub backbone (keys get the `pretrained.` prefix), transformers'
key names (`transformers_format`), and keys prefixed by `module.` (DDP) or `_orig_mod.` (torch.compile).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from .checksum import checksum_problem
from .configs import ENCODER_BY_EMBED_DIM
from .transformers_format import from_transformers_state, is_transformers_state

_STRIP_PREFIXES = ("module.", "_orig_mod.")
_DINOV2_HUB_KEYS = ("cls_token", "pos_embed", "patch_embed.proj.weight")
_OFFICIAL_METRIC = re.compile(r"depth_anything_v2_metric_(hypersim|vkitti)_vit[sblg]\.(pth|safetensors)")
_OFFICIAL_RELATIVE = re.compile(r"depth_anything_v2_vit[sblg]\.(pth|safetensors)")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, with the reason and what to do."""


# Files given as a checkpoint by mistake, by their first bytes (file signatures).
_FILE_TYPES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive (unpack it first)"),
)


def _file_type(head: bytes) -> str | None:
    """What a file is by its first bytes, for the types above and RIFF/ISO media; None if unknown."""
    for magic, name in _FILE_TYPES:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp":
        return "a video or HEIF image (ISO media)"
    return None


def _text_instead_of_weights(path: Path) -> str | None:
    """What a file holds instead of weights (a web page, a Git LFS pointer, an image, ...), or None."""
    with open(path, "rb") as f:
        raw = f.read(256)
    if raw.startswith((b"PK", b"\x80")) or raw[8:9] == b"{":
        # torch.save writes a zip archive (PK) or, in its legacy format, a pickle (protocol byte 0x80);
        # safetensors starts with its header's length (8 bytes) and the JSON header.
        return None
    kind = _file_type(raw)
    if kind:
        return f"not a checkpoint but {kind}; give the weights file (.pth, .pt or .safetensors)"
    head = raw.lstrip(b"\xef\xbb\xbf \t\r\n")
    start = head[:40].decode("utf-8", "replace").splitlines()[0] if head else ""
    if head.lower().startswith((b"<!doctype html", b"<html")):
        return (
            f"not a checkpoint (it starts with {start!r}: a web page saved under a checkpoint's name, e.g. a login, "
            "error or 'blob' page); re-download it (from Hugging Face take the 'resolve/main/...' download link)"
        )
    if head.startswith(b"version https://git-lfs"):
        return "not a checkpoint but a Git LFS pointer file; fetch the weights with `git lfs pull` or re-download"
    if path.suffix != ".safetensors" and head:
        shown = repr(start) if start.isprintable() else f"bytes {raw[:8].hex(' ')}"
        return f"not a checkpoint (it starts with {shown}, neither a torch.save archive nor a pickle)"
    return None


def read_checkpoint_file(path: str | os.PathLike) -> dict:
    """Read a .pth/.pt (weights_only) or .safetensors file into a dict, with clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    problem = _text_instead_of_weights(path)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    try:
        # Memory-mapped where the file is a zip archive (torch.save's format since 1.6); the checksum reads it all.
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        damage = checksum_problem(path, obj)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects or code that weights-only loading does not "
            f"allow, so it was not unpickled. Only load checkpoints from sources you trust; if you trust this one, "
            f"re-save its state dict with torch.save(model.state_dict(), ...). Detail: {str(err).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as err:
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(err).__name__}: {str(err).splitlines()[0]}); "
            f"re-download or re-save it"
        ) from None
    if damage:
        raise CheckpointError(f"{path}: {damage}")
    return obj


def extract_state_dict(obj: dict) -> dict[str, torch.Tensor]:
    """The model weights inside a checkpoint, with `module.`/`_orig_mod.` stripped, DINOv2 hub keys prefixed and
    transformers' names renamed."""
    for key in ("model", "state_dict"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"entry {key!r} is a {type(value).__name__}, not a tensor: not a state dict")
        for prefix in _STRIP_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    if all(k in state for k in _DINOV2_HUB_KEYS):
        state = {f"pretrained.{k}": v for k, v in state.items()}
    if is_transformers_state(state):
        try:
            state = from_transformers_state(state)
        except ValueError as err:
            raise CheckpointError(f"transformers-format weights that do not fit this model: {err}") from None
    return state


def infer_encoder(state: dict[str, torch.Tensor]) -> str | None:
    """'vits' | 'vitb' | 'vitl' | 'vitg' from the backbone width, or None if there is no backbone."""
    pos = state.get("pretrained.pos_embed")
    return None if pos is None else ENCODER_BY_EMBED_DIM.get(pos.shape[-1])


def checkpoint_config(obj: dict) -> dict | None:
    """The model config stored in one of our checkpoints, or None for a bare state dict."""
    config = obj.get("model_config") if isinstance(obj, dict) else None
    return dict(config) if isinstance(config, dict) else None


def official_kind(path: str | os.PathLike) -> str | None:
    """'metric' or 'relative' for the official file names (depth_anything_v2_metric_{hypersim,vkitti}_vitX.pth,
    depth_anything_v2_vitX.pth), None for any other name. Official metric and relative files have identical keys,
    so the name is all that tells them apart."""
    name = Path(path).name
    if _OFFICIAL_METRIC.fullmatch(name):
        return "metric"
    if _OFFICIAL_RELATIVE.fullmatch(name):
        return "relative"
    return None


def checkpoint_kind(path: str | os.PathLike, obj: dict) -> str | None:
    """'metric' or 'relative' from our model_config, else from an official file name; None when unknown."""
    config = checkpoint_config(obj)
    if config is not None:
        return "relative" if config.get("max_depth") is None else "metric"
    return official_kind(path)
