"""Model structure: official keys and shapes for every encoder, heads, input checks."""

import pytest
import torch
from conftest import manifest

from depth_anything_v2 import MODEL_CONFIGS, DepthAnythingV2


@pytest.mark.parametrize("encoder", ["vits", "vitb", "vitl", "vitg"])
@pytest.mark.parametrize("kind", ["relative", "metric"])
def test_state_dict_matches_official_manifest(encoder, kind):
    with torch.device("meta"):
        model = DepthAnythingV2(encoder, max_depth=20.0 if kind == "metric" else None)
    state = model.state_dict()
    expected = manifest(kind, encoder)
    assert list(state) == list(expected)
    assert {k: list(v.shape) for k, v in state.items()} == expected


@pytest.mark.parametrize("encoder", ["vits", "vitl"])
def test_camera_adds_keys_under_one_prefix_only(encoder):
    with torch.device("meta"):
        model = DepthAnythingV2(encoder, max_depth=20.0, use_camera_intrinsics=True, cam_token_inject_layer=3)
    state = model.state_dict()
    official = manifest("metric", encoder)
    new = [k for k in state if k not in official]
    assert new and all(k.startswith("cam_encoder.") for k in new)
    assert all(list(state[k].shape) == official[k] for k in official)


def test_official_config_kwargs_still_work():
    model = DepthAnythingV2(**MODEL_CONFIGS["vits"])
    assert model.max_depth is None and model.config["features"] == 64


def test_relative_and_metric_heads_differ_only_in_activation():
    relative, metric = DepthAnythingV2("vits"), DepthAnythingV2("vits", max_depth=80.0)
    metric.load_state_dict(relative.state_dict())
    x = torch.randn(1, 3, 70, 98)
    with torch.no_grad():
        disp, depth = relative(x), metric(x)
    assert disp.shape == depth.shape == (1, 70, 98)
    assert (disp >= 0).all()
    assert (depth > 0).all() and (depth < 80.0).all()


def test_input_not_multiple_of_14_is_rejected():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        DepthAnythingV2("vits")(torch.randn(1, 3, 70, 100))


def test_wrong_intrinsics_shape_is_rejected():
    model = DepthAnythingV2("vits", use_camera_intrinsics=True)
    with pytest.raises(ValueError, match=r"intrinsics must have shape \(2, 3, 3\)"):
        model(torch.randn(2, 3, 70, 70), torch.eye(3)[None])


def test_unknown_encoder_is_rejected():
    with pytest.raises(ValueError, match="unknown encoder 'vith'"):
        DepthAnythingV2("vith")
