"""The transformers format of Depth Anything (`DepthAnythingForDepthEstimation`): its config.json and weight names.

Both directions work on plain dicts, so that neither transformers nor a model is needed. The weights are the same
tensors under other names: renames, the fused `qkv` projection split into `query` / `key` / `value`, and the four
fusion blocks numbered from the coarsest (transformers' `fusion_stage.layers.0` is our `refinenet4`); nothing is
transposed, so a round trip is bit-exact. The names are those transformers writes to `model.safetensors` (the hub
files; transformers 5 renames some of them when it loads, and back when it saves); the names transformers 5 uses in
memory (`q_proj`, `o_proj`, `gate_proj`, ...) are read too.

Errors are `ValueError`s with the reason; the callers add the file.
"""

from __future__ import annotations

import re

import torch

from .configs import (
    BACKBONE_CONFIGS,
    ENCODER_BY_EMBED_DIM,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERMEDIATE_LAYER_IDX,
    MODEL_CONFIGS,
    PATCH_SIZE,
)

MODEL_TYPE = "depth_anything"
# The key that tells a transformers state dict from ours.
SIGNATURE_KEY = "backbone.embeddings.patch_embeddings.projection.weight"
IMAGE_SIZE = 518
REASSEMBLE_FACTORS = [4, 2, 1, 0.5]
HEAD_HIDDEN_SIZE = 32

# (our name, transformers name); `{n}` is a block or level index, the same on both sides.
_RENAMES = [
    ("pretrained.cls_token", "backbone.embeddings.cls_token"),
    ("pretrained.mask_token", "backbone.embeddings.mask_token"),
    ("pretrained.pos_embed", "backbone.embeddings.position_embeddings"),
    ("pretrained.patch_embed.proj.", "backbone.embeddings.patch_embeddings.projection."),
    ("pretrained.blocks.{n}.norm1.", "backbone.encoder.layer.{n}.norm1."),
    ("pretrained.blocks.{n}.attn.proj.", "backbone.encoder.layer.{n}.attention.output.dense."),
    ("pretrained.blocks.{n}.ls1.gamma", "backbone.encoder.layer.{n}.layer_scale1.lambda1"),
    ("pretrained.blocks.{n}.norm2.", "backbone.encoder.layer.{n}.norm2."),
    ("pretrained.blocks.{n}.mlp.fc1.", "backbone.encoder.layer.{n}.mlp.fc1."),
    ("pretrained.blocks.{n}.mlp.fc2.", "backbone.encoder.layer.{n}.mlp.fc2."),
    ("pretrained.blocks.{n}.mlp.w12.", "backbone.encoder.layer.{n}.mlp.weights_in."),
    ("pretrained.blocks.{n}.mlp.w3.", "backbone.encoder.layer.{n}.mlp.weights_out."),
    ("pretrained.blocks.{n}.ls2.gamma", "backbone.encoder.layer.{n}.layer_scale2.lambda1"),
    ("pretrained.norm.", "backbone.layernorm."),
    ("depth_head.projects.{n}.", "neck.reassemble_stage.layers.{n}.projection."),
    ("depth_head.resize_layers.{n}.", "neck.reassemble_stage.layers.{n}.resize."),
    ("depth_head.scratch.output_conv1.", "head.conv1."),
    ("depth_head.scratch.output_conv2.0.", "head.conv2."),
    ("depth_head.scratch.output_conv2.2.", "head.conv3."),
]
# The names transformers 5 uses in memory, as it writes them to files.
_IN_MEMORY_NAMES = [
    (".attention.q_proj.", ".attention.attention.query."),
    (".attention.k_proj.", ".attention.attention.key."),
    (".attention.v_proj.", ".attention.attention.value."),
    (".attention.o_proj.", ".attention.output.dense."),
    (".mlp.down_proj.", ".mlp.weights_out."),
]
_QKV = ("query", "key", "value")
# Inside a fusion block: our module name -> transformers'.
_FUSION_PARTS = {
    "out_conv": "projection",
    **{f"resConfUnit{u}.conv{c}": f"residual_layer{u}.convolution{c}" for u in (1, 2) for c in (1, 2)},
}
_OUR_FUSION_PARTS = {theirs: ours for ours, theirs in _FUSION_PARTS.items()}


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(re.escape("{n}"), r"(\d+)"))


_TO_TRANSFORMERS = [(_pattern(ours), theirs) for ours, theirs in _RENAMES]
_TO_OURS = [(_pattern(theirs), ours) for ours, theirs in _RENAMES]
_OUR_QKV = re.compile(r"pretrained\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)")
_THEIR_QKV = re.compile(r"backbone\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)")
_OUR_LAYER_RN = re.compile(r"depth_head\.scratch\.layer(\d)_rn\.weight")
_THEIR_CONVS = re.compile(r"neck\.convs\.(\d)\.weight")
_OUR_FUSION = re.compile(r"depth_head\.scratch\.refinenet(\d)\.(out_conv|resConfUnit\d\.conv\d)\.(weight|bias)")
_THEIR_FUSION = re.compile(
    r"neck\.fusion_stage\.layers\.(\d)\.(projection|residual_layer\d\.convolution\d)\.(weight|bias)"
)
_THEIR_GATE_UP = re.compile(r"(backbone\.encoder\.layer\.\d+\.mlp\.)(gate_proj|up_proj)\.(weight|bias)")


def _rename_prefix(key: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, target in rules:
        match = pattern.match(key)
        if match:
            name = target.replace("{n}", match.group(1)) if match.groups() else target
            return name + key[match.end() :]
    return None


def to_transformers_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (official) key names -> transformers' file names, the tensors unchanged (qkv split into copies).

    Raises:
        ValueError: a key transformers has no place for (a camera encoder, BatchNorm, class-token readout).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if match := _OUR_QKV.fullmatch(key):
            block, kind = match.groups()
            for name, part in zip(_QKV, value.chunk(3, dim=0)):
                out[f"backbone.encoder.layer.{block}.attention.attention.{name}.{kind}"] = part.clone()
        elif match := _OUR_LAYER_RN.fullmatch(key):
            out[f"neck.convs.{int(match.group(1)) - 1}.weight"] = value
        elif match := _OUR_FUSION.fullmatch(key):
            level, part, kind = match.groups()
            out[f"neck.fusion_stage.layers.{4 - int(level)}.{_FUSION_PARTS[part]}.{kind}"] = value
        elif (name := _rename_prefix(key, _TO_TRANSFORMERS)) is not None:
            out[name] = value
        else:
            raise ValueError(f"weight {key!r} has no counterpart in the transformers model")
    return out


def from_transformers_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' key names (file or in-memory ones) -> our (official) names; query, key, value are fused.

    Raises:
        ValueError: a key this model has no place for, or a block missing one of query / key / value.
    """
    state = _file_names(state)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if match := _THEIR_QKV.fullmatch(key):
            block, name, kind = match.groups()
            qkv.setdefault((block, kind), {})[name] = value
        elif match := _THEIR_CONVS.fullmatch(key):
            out[f"depth_head.scratch.layer{int(match.group(1)) + 1}_rn.weight"] = value
        elif match := _THEIR_FUSION.fullmatch(key):
            index, part, kind = match.groups()
            out[f"depth_head.scratch.refinenet{4 - int(index)}.{_OUR_FUSION_PARTS[part]}.{kind}"] = value
        elif (name := _rename_prefix(key, _TO_OURS)) is not None:
            out[name] = value
        else:
            raise ValueError(f"weight {key!r} is not part of a Depth Anything model")
    for (block, kind), parts in qkv.items():
        if set(parts) != set(_QKV):
            raise ValueError(f"block {block} has {sorted(parts)} {kind} but needs query, key and value")
        out[f"pretrained.blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts[name] for name in _QKV], dim=0)
    return out


def _file_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5's in-memory names -> its file names (the SwiGLU gate and up projections fused again)."""
    out: dict[str, torch.Tensor] = {}
    gate_up: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if match := _THEIR_GATE_UP.fullmatch(key):
            prefix, name, kind = match.groups()
            gate_up.setdefault((prefix, kind), {})[name] = value
            continue
        for new, old in _IN_MEMORY_NAMES:
            key = key.replace(new, old)
        out[key] = value
    for (prefix, kind), parts in gate_up.items():
        if set(parts) != {"gate_proj", "up_proj"}:
            raise ValueError(f"{prefix}* has only {sorted(parts)} {kind}")
        out[f"{prefix}weights_in.{kind}"] = torch.cat([parts["gate_proj"], parts["up_proj"]], dim=0)
    return out


def is_transformers_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict has transformers' names (`SIGNATURE_KEY`)."""
    return SIGNATURE_KEY in state


def writable_problem(config: dict) -> str | None:
    """Why a model of this config (`DepthAnythingV2.config`) has no transformers form, or None if it has one."""
    if config.get("use_camera_intrinsics"):
        return "it has a camera encoder"
    if config.get("use_bn"):
        return "its DPT head uses BatchNorm"
    if config.get("use_clstoken"):
        return "its DPT head reads the class token"
    max_depth = config.get("max_depth")
    if max_depth is not None and not float(max_depth).is_integer():
        return f"its max depth {max_depth:g} m is not a whole number (transformers' config holds an int)"
    return None


def to_transformers_config(config: dict) -> dict:
    """`DepthAnythingV2.config` -> the config.json of `DepthAnythingForDepthEstimation` (camera-less models only).

    A relative model gets max_depth 1: transformers multiplies the output of the relative head by it too.
    """
    problem = writable_problem(config)
    if problem:
        raise ValueError(f"no transformers form: {problem}")
    encoder = config["encoder"]
    backbone = BACKBONE_CONFIGS[encoder]
    metric = config.get("max_depth") is not None
    return {
        "architectures": ["DepthAnythingForDepthEstimation"],
        "model_type": MODEL_TYPE,
        "backbone_config": {
            "model_type": "dinov2",
            "hidden_size": backbone["embed_dim"],
            "num_hidden_layers": backbone["depth"],
            "num_attention_heads": backbone["num_heads"],
            "mlp_ratio": 4,
            "use_swiglu_ffn": backbone["ffn_layer"] == "swiglufused",
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "layerscale_value": 1.0,
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu",
            "qkv_bias": True,
            "apply_layernorm": True,
            "reshape_hidden_states": False,
            "out_indices": [i + 1 for i in INTERMEDIATE_LAYER_IDX[encoder]],
        },
        "patch_size": PATCH_SIZE,
        "reassemble_hidden_size": backbone["embed_dim"],
        "reassemble_factors": REASSEMBLE_FACTORS,
        "neck_hidden_sizes": list(config["out_channels"]),
        "fusion_hidden_size": config["features"],
        "head_in_index": -1,
        "head_hidden_size": HEAD_HIDDEN_SIZE,
        "depth_estimation_type": "metric" if metric else "relative",
        "max_depth": int(config["max_depth"]) if metric else 1,
    }


def _out_indices(backbone: dict) -> list[int]:
    if backbone.get("out_indices") is not None:
        return list(backbone["out_indices"])
    return [int(name.removeprefix("stage")) for name in backbone.get("out_features") or []]


def from_transformers_config(config: dict) -> dict:
    """A transformers config.json -> `DepthAnythingV2` arguments (encoder, widths, max_depth).

    Raises:
        ValueError: a setting this model cannot reproduce (another backbone, other layers or head), said by name.
    """
    backbone = config.get("backbone_config")
    if not isinstance(backbone, dict) or backbone.get("model_type") != "dinov2":
        raise ValueError("config.json has no inline DINOv2 backbone_config, so the encoder is unknown")
    encoder = ENCODER_BY_EMBED_DIM.get(backbone.get("hidden_size"))
    if encoder is None:
        raise ValueError(f"backbone hidden_size {backbone.get('hidden_size')} is none of ViT-S/B/L/G")
    expected = BACKBONE_CONFIGS[encoder]
    found = {
        "num_hidden_layers": (backbone.get("num_hidden_layers"), expected["depth"]),
        "num_attention_heads": (backbone.get("num_attention_heads"), expected["num_heads"]),
        "use_swiglu_ffn": (bool(backbone.get("use_swiglu_ffn")), expected["ffn_layer"] == "swiglufused"),
        "patch_size": (backbone.get("patch_size", PATCH_SIZE), PATCH_SIZE),
        "out_indices": (_out_indices(backbone), [i + 1 for i in INTERMEDIATE_LAYER_IDX[encoder]]),
        "reassemble_factors": ([float(f) for f in config.get("reassemble_factors", REASSEMBLE_FACTORS)],
                               [float(f) for f in REASSEMBLE_FACTORS]),
        "head_in_index": (config.get("head_in_index", -1), -1),
        "head_hidden_size": (config.get("head_hidden_size", HEAD_HIDDEN_SIZE), HEAD_HIDDEN_SIZE),
    }  # fmt: skip
    for name, (value, wanted) in found.items():
        if value != wanted:
            raise ValueError(f"{name} is {value}; this model's {encoder} has {wanted}")
    kind = config.get("depth_estimation_type", "relative")
    max_depth = config.get("max_depth", 1)
    if kind == "metric":
        if not isinstance(max_depth, (int, float)) or max_depth <= 0:
            raise ValueError(f"a metric config needs a positive max_depth (metres), got {max_depth!r}")
        max_depth = float(max_depth)
    elif kind == "relative":
        if max_depth not in (None, 1):
            raise ValueError(f"a relative config with max_depth {max_depth} scales its disparity; only 1 is read")
        max_depth = None
    else:
        raise ValueError(f"depth_estimation_type {kind!r} is neither 'relative' nor 'metric'")
    return {
        "encoder": encoder,
        # transformers' own defaults where the file leaves them out
        "features": config.get("fusion_hidden_size", MODEL_CONFIGS["vits"]["features"]),
        "out_channels": list(config.get("neck_hidden_sizes", MODEL_CONFIGS["vits"]["out_channels"])),
        "max_depth": max_depth,
    }


def processor_config() -> dict:
    """preprocessor_config.json for transformers' depth-estimation pipeline: the DPT processor settings of the
    published Depth Anything V2 models (short side to 518 px, multiples of 14, bicubic, ImageNet mean and std)."""
    return {
        "image_processor_type": "DPTImageProcessor",
        "do_resize": True,
        "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "keep_aspect_ratio": True,
        "ensure_multiple_of": PATCH_SIZE,
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
        "do_pad": False,
    }
