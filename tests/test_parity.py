"""Numerical parity with the official Depth Anything V2 outputs (tests/fixtures/parity/README.md).

Depth alone carries little signal with the fixture weights (a wrong intermediate layer moves it by 2e-5
relative), so backbone features and head logits are compared too, with the tolerances the README derives.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from depth_anything_v2 import DepthAnythingV2

PARITY = Path(__file__).parent / "fixtures" / "parity"


@pytest.fixture(params=["relative", "metric"])
def case(request, vits_weights):
    kind = request.param
    model = DepthAnythingV2("vits", max_depth=20.0 if kind == "metric" else None).eval()
    model.load_state_dict(vits_weights, strict=True)
    return model, dict(np.load(PARITY / f"vits_{kind}.npz"))


def test_forward_features_logits_and_depth(case):
    model, ref = case
    captured = {}
    model.depth_head.scratch.output_conv2[2].register_forward_hook(lambda m, i, o: captured.update(logits=o.clone()))
    get_layers = model.pretrained.get_intermediate_layers

    def spy(*args, **kwargs):
        captured["features"] = get_layers(*args, **kwargs)
        return captured["features"]

    model.pretrained.get_intermediate_layers = spy
    with torch.no_grad():
        depth = model(torch.from_numpy(ref["input"]))
    for i, (patch, cls_token) in enumerate(captured["features"]):
        torch.testing.assert_close(patch, torch.from_numpy(ref[f"feat{i}_patch"]), atol=2e-5, rtol=0)
        torch.testing.assert_close(cls_token, torch.from_numpy(ref[f"feat{i}_cls"]), atol=2e-5, rtol=0)
    torch.testing.assert_close(captured["logits"], torch.from_numpy(ref["head_logits"]), rtol=2e-6, atol=0)
    torch.testing.assert_close(depth, torch.from_numpy(ref["depth"]), rtol=2e-6, atol=0)


def test_infer_image_preprocessing_and_depth(case):
    model, ref = case
    image, size = model.image2tensor(ref["image_bgr"], 70)
    assert size == (120, 160)
    torch.testing.assert_close(image, torch.from_numpy(ref["image_tensor"]), atol=1e-6, rtol=0)
    depth = model.infer_image(ref["image_bgr"], input_size=70)
    assert depth.dtype == np.float32 and depth.shape == (120, 160)
    np.testing.assert_allclose(depth, ref["image_depth"], rtol=2e-6, atol=0)
