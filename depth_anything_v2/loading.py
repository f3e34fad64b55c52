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
import zipfile
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from .configs import ENCODER_BY_EMBED_DIM
from .dpt import DepthAnythingV2

logger = logging.getLogger(__name__)

CAMERA_PREFIX = "cam_encoder."
_STRIP_PREFIXES = ("module.", "_orig_mod.")
_DINOV2_HUB_KEYS = ("cls_token", "pos_embed", "patch_embed.proj.weight")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, with the reason and what to do."""


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read a .pth/.pt (weights_only) or .safetensors file into a dict, with clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects or code that weights-only loading does not "
            f"allow, so it was not unpickled. Only load checkpoints from sources you trust; if you trust this one, "
            f"re-save its state dict with torch.save(model.state_dict(), ...). Detail: {str(err).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(err).__name__}: {str(err).splitlines()[0]}); "
            f"re-download or re-save it"
        ) from None


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


def build_model_from_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    encoder: str | None = None,
    max_depth: float | None = None,
    **overrides: object,
) -> DepthAnythingV2:
    """Rebuild and load a model from a checkpoint alone (ours), or from flags for an official one.

    Args:
        path: checkpoint file.
        encoder: required for official checkpoints only if it cannot be inferred from the weights.
        max_depth: metric range in metres for official metric checkpoints (None: relative model).
        overrides: extra DepthAnythingV2 arguments for official checkpoints (e.g. use_camera_intrinsics).

    Returns:
        The model in eval mode on `device`.
    """
    obj = read_checkpoint(path)
    config = checkpoint_config(obj)
    if config is not None:
        if encoder is not None and encoder != config["encoder"]:
            raise CheckpointError(
                f"{path}: checkpoint was trained with encoder {config['encoder']!r} but {encoder!r} was asked for"
            )
        if max_depth is not None and config.get("max_depth") is not None and float(max_depth) != config["max_depth"]:
            raise CheckpointError(
                f"{path}: checkpoint was trained with max_depth {config['max_depth']} m but {max_depth} was asked for"
            )
    else:
        inferred = infer_encoder(extract_state_dict(obj))
        if encoder is not None and inferred is not None and encoder != inferred:
            raise CheckpointError(f"{path}: checkpoint is {inferred}, but encoder {encoder!r} was asked for")
        config = {"encoder": encoder or inferred or "vitl", "max_depth": max_depth, **overrides}
    model = DepthAnythingV2(**config)
    load_weights(model, obj)
    return model.to(device).eval()
