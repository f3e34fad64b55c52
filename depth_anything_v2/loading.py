"""Rebuilding a model from a checkpoint alone (`build_model_from_checkpoint`), and the loading API in one place.

Reading lives below: `checkpoint_file` (one .pth/.safetensors file, its state dict, what its name says), `hub`
(Hugging Face hub names -> the local cache), `pretrained` (any name, model folders, loading into a model).
"""

from __future__ import annotations

import os

import torch

from .checkpoint_file import (
    CheckpointError,
    checkpoint_config,
    checkpoint_kind,
    extract_state_dict,
    infer_encoder,
    official_kind,
    read_checkpoint_file,
)
from .dpt import DepthAnythingV2
from .pretrained import CAMERA_PREFIX, load_weights, read_checkpoint, resolve_model_config

__all__ = [
    "CAMERA_PREFIX",
    "CheckpointError",
    "build_model_from_checkpoint",
    "checkpoint_config",
    "checkpoint_kind",
    "extract_state_dict",
    "infer_encoder",
    "load_weights",
    "official_kind",
    "read_checkpoint",
    "read_checkpoint_file",
]


def build_model_from_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    encoder: str | None = None,
    max_depth: float | None = None,
    obj: dict | None = None,
    **overrides: object,
) -> DepthAnythingV2:
    """Rebuild and load a model from a checkpoint alone (ours, a model folder, a hub name), or from flags for a
    bare official file.

    Args:
        path: checkpoint file, model folder or hub name (`pretrained.read_checkpoint`).
        encoder: required for official checkpoints only if it cannot be inferred from the weights.
        max_depth: metric range in metres for bare official metric files (None: relative model).
        obj: the checkpoint already read from `path` (it is not read again).
        overrides: extra DepthAnythingV2 arguments for bare official files (e.g. use_camera_intrinsics).

    Returns:
        The model in eval mode on `device`.
    """
    obj = read_checkpoint(path) if obj is None else obj
    model = DepthAnythingV2(**resolve_model_config(path, obj, encoder, max_depth, **overrides))
    load_weights(model, obj)
    return model.to(device).eval()
