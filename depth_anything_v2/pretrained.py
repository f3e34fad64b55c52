"""Any checkpoint name -> one checkpoint dict -> a model, and a model -> a folder to share.

`read_checkpoint` takes every form a checkpoint is given in: a .pth/.pt/.safetensors file
(`checkpoint_file.read_checkpoint_file`), a model folder (transformers' format, or this repo's for models with a
camera encoder), the `model.safetensors` of such a folder, or a Hugging Face hub name (`hub.resolve_checkpoint`).
Folders and the official hub repositories come back as `{'model': state dict, 'model_config': ...}`, the form of
our training checkpoints, so that everything downstream knows the encoder, the metric range and the camera
settings. `write_model_folder` writes the folders (`DepthAnythingV2.save_pretrained`).
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from .checkpoint_file import (
    CheckpointError,
    checkpoint_config,
    extract_state_dict,
    infer_encoder,
    official_kind,
    read_checkpoint_file,
)
from .hub import resolve_checkpoint
from .model_card import model_card
from .transformers_format import (
    MODEL_TYPE,
    from_transformers_config,
    processor_config,
    to_transformers_config,
    to_transformers_state,
    writable_problem,
)

logger = logging.getLogger(__name__)

CAMERA_PREFIX = "cam_encoder."
# config.json `model_type` of this repo's model folders (transformers' is `depth_anything`).
FOLDER_MODEL_TYPE = "depth_anything_v2_intrinsics"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PROCESSOR_FILE = "preprocessor_config.json"
CARD_FILE = "README.md"


def read_checkpoint(
    name: str | os.PathLike, revision: str | None = None, cache_dir: str | os.PathLike | None = None
) -> dict:
    """A checkpoint given by file, folder or hub name, read into one dict (see the module docstring).

    Args:
        name: a local file or folder, or a hub name (`hub`'s docstring).
        revision, cache_dir: of a hub name (branch, tag or commit; the hub cache folder).

    Raises:
        CheckpointError: a missing or unreadable file, a folder of another kind, a hub name that cannot be fetched.
    """
    resolved = resolve_checkpoint(name, revision, cache_dir)
    path = resolved.path
    if path.is_file() and path.name == WEIGHTS_FILE and (path.parent / CONFIG_FILE).is_file():
        path = path.parent  # its config.json says what the weights are (metric or not, the camera)
    if path.is_dir():
        return read_model_folder(path)
    obj = read_checkpoint_file(path)
    if resolved.model_config is None:
        return obj
    return {"model": extract_state_dict(obj), "model_config": dict(resolved.model_config)}


def read_model_folder(folder: Path) -> dict:
    """{'model': state dict with our names, 'model_config': DepthAnythingV2 arguments} of a model folder."""
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(
            f"{folder}: a folder without {CONFIG_FILE}, so no model folder (save_pretrained or transformers format); "
            "give the weights file in it instead"
        )
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_path}: not valid JSON ({err})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type == FOLDER_MODEL_TYPE:
        model_config = config.get("model_config")
        if not isinstance(model_config, dict) or "encoder" not in model_config:
            raise CheckpointError(f"{config_path}: no model_config with the encoder")
    elif model_type == MODEL_TYPE:
        try:
            model_config = from_transformers_config(config)
        except ValueError as err:
            raise CheckpointError(f"{config_path}: {err}") from None
    else:
        raise CheckpointError(
            f"{config_path}: model_type {model_type!r} is neither transformers' {MODEL_TYPE!r} (Depth Anything) nor "
            f"this repo's {FOLDER_MODEL_TYPE!r}"
        )
    try:
        state = extract_state_dict(read_checkpoint_file(folder / WEIGHTS_FILE))
    except CheckpointError as err:
        raise CheckpointError(f"{folder}: {err}") from None
    return {"model": state, "model_config": dict(model_config)}


def checkpoint_weights_file(name: str | os.PathLike) -> Path:
    """The local file that holds a checkpoint's weights (a folder's model.safetensors), e.g. to key a cache."""
    path = resolve_checkpoint(name).path
    return path / WEIGHTS_FILE if path.is_dir() else path


def _group(keys: list[str]) -> dict[str, int]:
    groups: dict[str, int] = defaultdict(int)
    for key in keys:
        groups[key.split(".")[0]] += 1
    return dict(groups)


def load_weights(model: nn.Module, source: str | os.PathLike | dict, skip_camera: bool = False) -> dict:
    """Load weights into `model`, from any checkpoint `read_checkpoint` reads or an already-read dict.

    Missing camera-encoder keys are expected when starting from an official checkpoint and are reported as
    newly initialised; any other missing key, an unexpected key or a wrong shape is an error that names the key,
    both shapes and the likely cause.

    Args:
        model: a DepthAnythingV2 (unwrapped).
        source: a checkpoint name or an already-read dict.
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


def resolve_model_config(
    name: str | os.PathLike,
    obj: dict,
    encoder: str | None = None,
    max_depth: float | None = None,
    **overrides: object,
) -> dict:
    """The DepthAnythingV2 arguments of a checkpoint already read (`obj`), checked against what was asked for.

    A checkpoint that carries its config (ours, a model folder, an official hub repository) decides, and a
    conflicting `encoder` or `max_depth` is an error; a bare official file takes `max_depth` from the caller (its
    file name says metric or relative, not the range) and the encoder from its weights.

    Args:
        name: the checkpoint's name, for messages and the official file names.
        encoder: required for bare checkpoints only if it cannot be inferred from the weights.
        max_depth: metric range in metres for bare metric checkpoints (None: relative model).
        overrides: extra DepthAnythingV2 arguments for bare checkpoints (e.g. use_camera_intrinsics).
    """
    config = checkpoint_config(obj)
    if config is not None:
        if encoder is not None and encoder != config["encoder"]:
            raise CheckpointError(
                f"{name}: checkpoint was trained with encoder {config['encoder']!r} but {encoder!r} was asked for"
            )
        if max_depth is not None and config.get("max_depth") != float(max_depth):
            stored = config.get("max_depth")
            stored = "is a relative model" if stored is None else f"was trained with max_depth {stored} m"
            raise CheckpointError(f"{name}: this checkpoint {stored}, but max_depth {max_depth} was asked for")
        return config
    inferred = infer_encoder(extract_state_dict(obj))
    if encoder is not None and inferred is not None and encoder != inferred:
        raise CheckpointError(f"{name}: checkpoint is {inferred}, but encoder {encoder!r} was asked for")
    kind = official_kind(name)
    if kind == "metric" and max_depth is None:
        raise CheckpointError(
            f"{name}: an official metric checkpoint (by its file name) needs its metric range: give --max-depth "
            "20 (max_depth=20.0) for the Hypersim (indoor) models or 80 for the Virtual KITTI (outdoor) ones, or "
            "load it by its hub name (depth-anything/Depth-Anything-V2-Metric-Hypersim-Small, ...), which says it"
        )
    if kind == "relative" and max_depth is not None:
        raise CheckpointError(
            f"{name}: an official relative checkpoint (by its file name) predicts disparity, not metres, but a "
            f"max depth of {max_depth:g} m was asked for; drop --max-depth, or use a metric checkpoint "
            "(depth_anything_v2_metric_{hypersim,vkitti}_<encoder>.pth)"
        )
    return {"encoder": encoder or inferred or "vitl", "max_depth": max_depth, **overrides}


def write_model_folder(
    folder: str | os.PathLike,
    config: dict,
    state: dict[str, torch.Tensor],
    training: dict | None = None,
    repo_id: str | None = None,
) -> str:
    """Write a model folder: config.json, model.safetensors and a model card (README.md).

    A model transformers can represent (no camera encoder, see `transformers_format.writable_problem`) is written
    in transformers' format (with preprocessor_config.json for its pipeline); any other in this repo's format,
    config.json holding `model_config` and the weights under our names.

    Args:
        folder: created if needed; files of the same names are replaced.
        config: the model's `DepthAnythingV2.config`.
        state: its state dict.
        training: for the model card (`model_card.model_card`).
        repo_id: the hub name the card's commands use.

    Returns:
        'transformers' or 'depth_anything_v2_intrinsics', the format written.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().to("cpu").contiguous() for key, value in state.items()}
    problem = writable_problem(config)
    if problem is None:
        files = {CONFIG_FILE: to_transformers_config(config), PROCESSOR_FILE: processor_config()}
        state = to_transformers_state(state)
    else:
        logger.info("%s: this repo's format, not transformers', as %s", folder, problem)
        files = {CONFIG_FILE: {"model_type": FOLDER_MODEL_TYPE, "format_version": 1, "model_config": dict(config)}}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    for file_name, content in files.items():
        (folder / file_name).write_text(json.dumps(content, indent=2) + "\n")
    card = model_card(config, problem is None, training, repo_id or f"your-name/{folder.name}")
    (folder / CARD_FILE).write_text(card)
    return "transformers" if problem is None else FOLDER_MODEL_TYPE
