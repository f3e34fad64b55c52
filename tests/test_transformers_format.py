"""The transformers format (depth_anything_v2/transformers_format.py) against the installed transformers: a random
`DepthAnythingForDepthEstimation` and our model read from its save_pretrained folder predict the same depth at
518 x 518 (relative and metric, vits and vitb); our weights -> transformers -> our weights is bit-exact; export.py
--format hf writes folders transformers and its pipeline load, and camera models' folders read back exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import assert_same_state, varying_relative_vits

from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.geometry import canonical_intrinsics
from depth_anything_v2.loading import CheckpointError, read_checkpoint
from depth_anything_v2.transformers_format import from_transformers_state, to_transformers_state
from export import get_args_parser, main
from util.checkpoint import save_checkpoint

transformers = pytest.importorskip("transformers")

# The published shapes (transformers' DepthAnything docs; Depth-Anything-V2-{Small,Base}-hf config.json).
SIZES = {
    "vits": {"hidden_size": 384, "num_attention_heads": 6, "neck_hidden_sizes": [48, 96, 192, 384], "fusion": 64},
    "vitb": {"hidden_size": 768, "num_attention_heads": 12, "neck_hidden_sizes": [96, 192, 384, 768], "fusion": 128},
}


def transformers_model(encoder: str, max_depth: int | None):
    """A seeded random `DepthAnythingForDepthEstimation` built from transformers' own config classes."""
    size = SIZES[encoder]
    backbone = transformers.Dinov2Config(
        hidden_size=size["hidden_size"], num_attention_heads=size["num_attention_heads"], num_hidden_layers=12,
        image_size=518, patch_size=14, out_indices=[3, 6, 9, 12], reshape_hidden_states=False,
    )  # fmt: skip
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=size["hidden_size"],
        neck_hidden_sizes=size["neck_hidden_sizes"],
        fusion_hidden_size=size["fusion"],
        depth_estimation_type="relative" if max_depth is None else "metric",
        max_depth=1 if max_depth is None else max_depth,
    )
    torch.manual_seed(0)
    model = transformers.DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # transformers' initialisation leaves many zeros and ones
            parameter.add_(torch.randn_like(parameter) * 0.02)
        if max_depth is None:
            model.head.conv3.bias.fill_(1.0)  # a random relative head's final ReLU is zero everywhere otherwise
    return model


def relative_difference(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("encoder, max_depth", [("vits", None), ("vits", 20), ("vitb", None), ("vitb", 80)])
def test_transformers_and_our_model_from_its_folder_agree_at_518(encoder, max_depth, tmp_path):
    theirs = transformers_model(encoder, max_depth)
    theirs.save_pretrained(tmp_path)
    ours = DepthAnythingV2.from_pretrained(tmp_path)
    assert (ours.encoder, ours.max_depth) == (encoder, None if max_depth is None else float(max_depth))
    image = torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = theirs(pixel_values=image).predicted_depth
        got = ours(image)
    assert expected.abs().max() > 0 and expected.std() > 0
    assert relative_difference(got, expected) <= 1e-5


def test_official_weights_through_transformers_and_back_are_bit_exact(vits_weights, tmp_path):
    model = DepthAnythingV2("vits", max_depth=20.0)
    model.load_state_dict(vits_weights)
    assert_same_state(from_transformers_state(to_transformers_state(vits_weights)), vits_weights)
    assert model.save_pretrained(tmp_path / "ours") == "transformers"
    theirs, info = transformers.DepthAnythingForDepthEstimation.from_pretrained(
        tmp_path / "ours", output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert theirs.config.depth_estimation_type == "metric" and theirs.config.max_depth == 20
    theirs.save_pretrained(tmp_path / "theirs")
    back = DepthAnythingV2.from_pretrained(tmp_path / "theirs")
    assert back.max_depth == 20.0
    assert_same_state(back.state_dict(), vits_weights)


def test_a_transformers_config_this_model_cannot_follow_is_refused(tmp_path):
    varying_relative_vits().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["backbone_config"]["out_indices"] = [9, 10, 11, 12]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json: out_indices is \[9, 10, 11, 12\]; this model's vits has"):
        read_checkpoint(tmp_path)
    config["backbone_config"]["out_indices"] = [3, 6, 9, 12]
    config["max_depth"] = 2
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="a relative config with max_depth 2 scales its disparity"):
        read_checkpoint(tmp_path)


def write_run(folder, model: DepthAnythingV2) -> None:
    """A training run's latest.pth and metrics.jsonl, as train.py leaves them."""
    folder.mkdir()
    args = {"dataset": "hypersim", "pretrained_from": "depth-anything/Depth-Anything-V2-Metric-Hypersim-Small"}
    save_checkpoint(
        {"model": model.state_dict(), "model_config": model.config, "iteration": 2000, "args": args},
        folder / "latest.pth",
    )
    events = [{"step": 1000, "eval/abs_rel": 0.2}, {"step": 2000, "train/loss": 0.1},
              {"step": 2000, "eval/abs_rel": 0.125, "eval/d1": 0.875}]  # fmt: skip
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_export_hf_of_a_camera_less_checkpoint_loads_in_transformers_and_its_pipeline(tmp_path):
    from PIL import Image

    torch.manual_seed(0)
    write_run(tmp_path / "run", DepthAnythingV2("vits", max_depth=20.0))
    argv = ["--format", "hf", "--load-from", str(tmp_path / "run" / "latest.pth"), "--output", str(tmp_path / "hf"),
            "--repo-id", "me/student"]  # fmt: skip
    assert main(get_args_parser().parse_args(argv)) == 0  # it loads the folder in transformers and compares at 518
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json"
    ]  # fmt: skip
    card = (tmp_path / "hf" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: depth-estimation\nlicense: other")
    for fact in ("`hypersim`", "Iterations: 2000", "iteration 2000", "| abs_rel | 0.125 |", "| d1 | 0.875 |",
                 'from_pretrained("me/student")', "up to 20 m"):  # fmt: skip
        assert fact in card, fact
    pipe = transformers.pipeline("depth-estimation", model=str(tmp_path / "hf"))
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (42, 56, 3), dtype=np.uint8))
    assert pipe(photo)["predicted_depth"].shape == (42, 56)
    assert main(get_args_parser().parse_args(argv)) == 2  # the folder is not empty now: refused


def test_export_hf_of_a_camera_model_reads_back_exactly(tmp_path):
    torch.manual_seed(0)
    model = DepthAnythingV2("vits", max_depth=10.0, use_camera_intrinsics=True, cam_token_inject_layer=3).eval()
    with torch.no_grad():  # the camera path starts as an identity; random weights make K change the depth
        for parameter in model.cam_encoder.parameters():
            parameter.normal_(0.0, 0.1)
    write_run(tmp_path / "run", model)
    argv = ["--format", "hf", "--load-from", str(tmp_path / "run" / "latest.pth"), "--output", str(tmp_path / "hf"),
            "--no-check"]  # fmt: skip
    assert main(get_args_parser().parse_args(argv)) == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "depth_anything_v2_intrinsics" and config["model_config"] == model.config
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "library_name: pytorch" in card and "after block 3" in card and "intrinsics=K" in card
    loaded = DepthAnythingV2.from_pretrained(tmp_path / "hf")
    assert_same_state(loaded.state_dict(), model.state_dict())
    K = torch.as_tensor(canonical_intrinsics(56, 70), dtype=torch.float32)[None]
    zoomed = K.clone()
    zoomed[:, [0, 1], [0, 1]] *= 2.0
    image = torch.randn(1, 3, 56, 70, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(loaded(image, K), model(image, K))
        assert not torch.allclose(model(image, K), model(image, zoomed))  # K matters, so the test could fail
