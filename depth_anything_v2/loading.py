"""Weight loading: one loader for every checkpoint format, and rebuilding a model from a checkpoint.

Accepted by `load_weights`: an official Depth Anything V2 state dict, our training checkpoints
(`{'model': ..., 'model_config': ...}`), a DINOv2 hub backbone (keys get the `pretrained.` prefix),
`.safetensors`, and keys prefixed by `module.` (DDP) or `_orig_mod.` (torch.compile). Everything is read
with `torch.load(..., weights_only=True)`: a file that holds code is refused, never run.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from .checksum import checksum_problem
from .configs import ENCODER_BY_EMBED_DIM
from .dpt import DepthAnythingV2

logger = logging.getLogger(__name__)

CAMERA_PREFIX = "cam_encoder."
_STRIP_PREFIXES = ("module.", "_orig_mod.")
_DINOV2_HUB_KEYS = ("cls_token", "pos_embed", "patch_embed.proj.weight")
_OFFICIAL_METRIC = re.compile(r"depth_anything_v2_metric_(hypersim|vkitti)_vit[sblg]\.(pth|safetensors)")
_OFFICIAL_RELATIVE = re.compile(r"depth_anything_v2_vit[sblg]\.(pth|safetensors)")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, with the reason and what to do."""


def _text_instead_of_weights(path: Path) -> str | None:
    """What a download that went wrong holds instead of weights (a web page, a Git LFS pointer), or None."""
    with open(path, "rb") as f:
        head = f.read(256).lstrip(b"\xef\xbb\xbf \t\r\n")
    start = head[:40].decode("utf-8", "replace").splitlines()[0] if head else ""
    if head.lower().startswith((b"<!doctype html", b"<html")):
        return (
            f"not a checkpoint (it starts with {start!r}: a web page saved under a checkpoint's name, e.g. a login, "
            "error or 'blob' page); re-download it (from Hugging Face take the 'resolve/main/...' download link)"
        )
    if head.startswith(b"version https://git-lfs"):
        return "not a checkpoint but a Git LFS pointer file; fetch the weights with `git lfs pull` or re-download"
    if path.suffix != ".safetensors" and head and not head.startswith((b"PK", b"\x80")):
        # torch.save writes a zip archive (PK) or, in its legacy format, a pickle (protocol byte 0x80).
        return f"not a checkpoint (it starts with {start!r}, neither a torch.save archive nor a pickle)"
    return None


def read_checkpoint(path: str | os.PathLike) -> dict:
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
    """The model weights inside a checkpoint, with `module.`/`_orig_mod.` stripped and hub keys prefixed."""
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
    return state


def infer_encoder(state: dict[str, torch.Tensor]) -> str | None:
    """'vits' | 'vitb' | 'vitl' | 'vitg' from the backbone width, or None if there is no backbone."""
    pos = state.get("pretrained.pos_embed")
    return None if pos is None else ENCODER_BY_EMBED_DIM.get(pos.shape[-1])


def _group(keys: list[str]) -> dict[str, int]:
    groups: dict[str, int] = defaultdict(int)
    for key in keys:
        groups[key.split(".")[0]] += 1
    return dict(groups)


def load_weights(model: nn.Module, source: str | os.PathLike | dict, skip_camera: bool = False) -> dict:
    """Load weights into `model`, accepting every format listed in the module docstring.

    Missing camera-encoder keys are expected when starting from an official checkpoint and are reported as
    newly initialised; any other missing key, an unexpected key or a wrong shape is an error that names the key,
    both shapes and the likely cause.

    Args:
        model: a DepthAnythingV2 (unwrapped).
        source: a checkpoint path or an already-read dict.
        skip_camera: ignore camera-encoder weights in the checkpoint (keep the model's fresh ones).

    Returns:
        {'missing': {group: count}, 'loaded': int, 'skipped': int}.
    """
    name = str(source) if not isinstance(source, dict) else "checkpoint"
    state = extract_state_dict(read_checkpoint(source) if not isinstance(source, dict) else source)
    skipped = 0
    if skip_camera:
        skipped = sum(k.startswith(CAMERA_PREFIX) for k in state)
        state = {k: v for k, v in state.items() if not k.startswith(CAMERA_PREFIX)}
    expected = model.state_dict()
    unexpected = [k for k in state if k not in expected]
    missing = [k for k in expected if k not in state]
    src_encoder, model_encoder = infer_encoder(state), getattr(model, "encoder", None)
    hint = ""
    if src_encoder and model_encoder and src_encoder != model_encoder:
        hint = (
            f" Likely cause: the checkpoint is {src_encoder}, the model is {model_encoder} (--encoder {src_encoder})."
        )
    for key in expected:
        if key in state and state[key].shape != expected[key].shape:
            raise CheckpointError(
                f"{name}: shape mismatch for {key}: checkpoint {tuple(state[key].shape)}, "
                f"model {tuple(expected[key].shape)}.{hint}"
            )
    if unexpected:
        cause = hint or (
            " Likely cause: the checkpoint has a camera encoder but the model was built without one "
            "(add --use-camera-intrinsics or load with skip_camera)."
            if any(k.startswith(CAMERA_PREFIX) for k in unexpected)
            else ""
        )
        raise CheckpointError(
            f"{name}: {len(unexpected)} unexpected keys, by module {_group(unexpected)}, e.g. {unexpected[0]}.{cause}"
        )
    hard_missing = [k for k in missing if not k.startswith(CAMERA_PREFIX)]
    if hard_missing:
        raise CheckpointError(
            f"{name}: {len(hard_missing)} keys missing, by module {_group(hard_missing)}, e.g. {hard_missing[0]}.{hint}"
        )
    model.load_state_dict(state, strict=False)
    groups = _group(missing)
    for group, count in groups.items():
        logger.info("%s: %d tensors newly initialized: expected for a new camera encoder", group, count)
    return {"missing": groups, "loaded": len(state), "skipped": skipped}


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


def build_model_from_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    encoder: str | None = None,
    max_depth: float | None = None,
    obj: dict | None = None,
    **overrides: object,
) -> DepthAnythingV2:
    """Rebuild and load a model from a checkpoint alone (ours), or from flags for an official one.

    Args:
        path: checkpoint file.
        encoder: required for official checkpoints only if it cannot be inferred from the weights.
        max_depth: metric range in metres for official metric checkpoints (None: relative model).
        obj: the checkpoint already read from `path` (it is not read again).
        overrides: extra DepthAnythingV2 arguments for official checkpoints (e.g. use_camera_intrinsics).

    Returns:
        The model in eval mode on `device`.
    """
    obj = read_checkpoint(path) if obj is None else obj
    config = checkpoint_config(obj)
    if config is not None:
        if encoder is not None and encoder != config["encoder"]:
            raise CheckpointError(
                f"{path}: checkpoint was trained with encoder {config['encoder']!r} but {encoder!r} was asked for"
            )
        if max_depth is not None and config.get("max_depth") != float(max_depth):
            stored = config.get("max_depth")
            stored = "is a relative model" if stored is None else f"was trained with max_depth {stored} m"
            raise CheckpointError(f"{path}: this checkpoint {stored}, but max_depth {max_depth} was asked for")
    else:
        inferred = infer_encoder(extract_state_dict(obj))
        if encoder is not None and inferred is not None and encoder != inferred:
            raise CheckpointError(f"{path}: checkpoint is {inferred}, but encoder {encoder!r} was asked for")
        kind = official_kind(path)
        if kind == "metric" and max_depth is None:
            raise CheckpointError(
                f"{path}: an official metric checkpoint (by its file name) needs its metric range: give --max-depth "
                "20 for the Hypersim (indoor) models or 80 for the Virtual KITTI (outdoor) ones"
            )
        if kind == "relative" and max_depth is not None:
            raise CheckpointError(
                f"{path}: an official relative checkpoint (by its file name) predicts disparity, not metres, but a "
                f"max depth of {max_depth:g} m was asked for; drop --max-depth, or use a metric checkpoint "
                "(depth_anything_v2_metric_{hypersim,vkitti}_<encoder>.pth)"
            )
        config = {"encoder": encoder or inferred or "vitl", "max_depth": max_depth, **overrides}
    model = DepthAnythingV2(**config)
    load_weights(model, obj)
    return model.to(device).eval()
