"""The weight loader: formats, prefixes, missing-key summary, clear errors, refusal of pickled code, atomic save."""

import logging

import pytest
import torch

from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.loading import (
    CheckpointError,
    build_model_from_checkpoint,
    extract_state_dict,
    infer_encoder,
    load_weights,
    read_checkpoint,
)
from util.checkpoint import save_checkpoint


def assert_same_weights(model, state):
    for key, value in state.items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
@pytest.mark.parametrize("nested", [None, "model", "state_dict"])
def test_prefixes_and_nesting(tmp_path, vits_weights, prefix, nested):
    state = {prefix + k: v for k, v in vits_weights.items()}
    obj = {nested: state, "epoch": 3} if nested else state
    torch.save(obj, tmp_path / "ckpt.pth")
    model = DepthAnythingV2("vits", max_depth=20.0)
    report = load_weights(model, tmp_path / "ckpt.pth")
    assert report["missing"] == {} and report["loaded"] == len(vits_weights)
    assert_same_weights(model, vits_weights)


def test_dinov2_hub_backbone_keys_get_the_pretrained_prefix(vits_weights):
    hub = {k[len("pretrained.") :]: v for k, v in vits_weights.items() if k.startswith("pretrained.")}
    state = extract_state_dict(hub)
    assert set(state) == {k for k in vits_weights if k.startswith("pretrained.")}
    assert infer_encoder(state) == "vits"


def test_missing_camera_keys_are_summarised_as_expected(vits_weights, caplog):
    model = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True)
    n_camera = sum(k.startswith("cam_encoder.") for k in model.state_dict())
    with caplog.at_level(logging.INFO):
        report = load_weights(model, vits_weights)
    assert report["missing"] == {"cam_encoder": n_camera}
    assert f"cam_encoder: {n_camera} tensors newly initialized: expected for a new camera encoder" in caplog.text


def test_skip_camera_keeps_fresh_camera_weights(tmp_path, vits_weights):
    trained = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True)
    torch.nn.init.constant_(trained.cam_encoder.focal_weight, 0.7)
    fresh = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True)
    report = load_weights(fresh, trained.state_dict(), skip_camera=True)
    assert report["skipped"] > 0 and fresh.cam_encoder.focal_weight.item() == 0.0


def test_shape_mismatch_names_key_shapes_and_cause(vits_weights):
    model = DepthAnythingV2("vitb", max_depth=20.0)
    with pytest.raises(CheckpointError) as err:
        load_weights(model, vits_weights)
    message = str(err.value)
    assert "pretrained.cls_token" in message and "(1, 1, 384)" in message and "(1, 1, 768)" in message
    assert "checkpoint is vits, the model is vitb" in message


def test_unexpected_camera_keys_say_what_to_do():
    with_camera = DepthAnythingV2("vits", use_camera_intrinsics=True).state_dict()
    with pytest.raises(CheckpointError, match="has a camera encoder but the model was built without one"):
        load_weights(DepthAnythingV2("vits"), with_camera)


def test_missing_backbone_keys_are_an_error(vits_weights):
    partial = {k: v for k, v in vits_weights.items() if not k.startswith("depth_head.")}
    with pytest.raises(CheckpointError, match=r"keys missing, by module \{'depth_head'"):
        load_weights(DepthAnythingV2("vits", max_depth=20.0), partial)


class _Malicious:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_holding_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned.txt"
    torch.save({"model": {}, "payload": _Malicious(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused to load"):
        load_weights(DepthAnythingV2("vits"), tmp_path / "evil.pth")
    assert not marker.exists()


def test_truncated_checkpoint_gives_a_clear_error(tmp_path, vits_weights):
    path = tmp_path / "full.pth"
    torch.save(vits_weights, path)
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated checkpoint"):
        read_checkpoint(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        read_checkpoint(tmp_path / "absent.pth")


def test_our_checkpoint_rebuilds_the_model_alone(tmp_path):
    model = DepthAnythingV2("vits", max_depth=10.0, use_camera_intrinsics=True, cam_token_inject_layer=2)
    save_checkpoint({"model": model.state_dict(), "model_config": model.config, "epoch": 1}, tmp_path / "latest.pth")
    assert not list(tmp_path.glob(".*tmp*"))
    rebuilt = build_model_from_checkpoint(tmp_path / "latest.pth")
    assert rebuilt.config == model.config and not rebuilt.training
    assert_same_weights(rebuilt, model.state_dict())
    with pytest.raises(CheckpointError, match="trained with encoder 'vits' but 'vitl' was asked for"):
        build_model_from_checkpoint(tmp_path / "latest.pth", encoder="vitl")
    with pytest.raises(CheckpointError, match="max_depth 10.0 m, but max_depth 20.0 was asked for"):
        build_model_from_checkpoint(tmp_path / "latest.pth", max_depth=20.0)


def test_official_checkpoint_rebuilds_from_flags(tmp_path, vits_weights):
    torch.save(vits_weights, tmp_path / "depth_anything_v2_metric_hypersim_vits.pth")
    model = build_model_from_checkpoint(tmp_path / "depth_anything_v2_metric_hypersim_vits.pth", max_depth=20.0)
    assert model.encoder == "vits" and model.max_depth == 20.0
    with pytest.raises(CheckpointError, match="checkpoint is vits, but encoder 'vitl' was asked for"):
        build_model_from_checkpoint(tmp_path / "depth_anything_v2_metric_hypersim_vits.pth", encoder="vitl")


def test_safetensors_is_read(tmp_path, vits_weights):
    from safetensors.torch import save_file

    save_file(dict(vits_weights), str(tmp_path / "w.safetensors"))
    model = DepthAnythingV2("vits")
    load_weights(model, tmp_path / "w.safetensors")
    assert_same_weights(model, vits_weights)


@pytest.mark.parametrize("suffix, kind", [(".jpg", "a JPEG image"), (".png", "a PNG image")])
def test_an_image_given_as_a_checkpoint_is_named_not_printed_as_bytes(tmp_path, suffix, kind):
    import cv2
    import numpy as np

    photo = cv2.imencode(suffix, np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    for name in (f"photo{suffix}", "renamed.pth", "renamed.safetensors"):
        (tmp_path / name).write_bytes(photo)
        with pytest.raises(CheckpointError) as error:
            read_checkpoint(tmp_path / name)
        assert str(error.value) == f"{tmp_path / name}: not a checkpoint but {kind}; give the weights file (.pth, " \
            ".pt or .safetensors)"  # fmt: skip


def test_unknown_binary_is_shown_as_hex_bytes(tmp_path):
    (tmp_path / "blob.pth").write_bytes(bytes([0, 1, 2, 250, 251, 252, 7, 8, 9]) * 4)
    with pytest.raises(CheckpointError, match=r"it starts with bytes 00 01 02 fa fb fc 07 08, neither"):
        read_checkpoint(tmp_path / "blob.pth")
