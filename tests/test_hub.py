"""Checkpoints by Hugging Face hub name (depth_anything_v2/hub.py), offline, from hub caches built in tmp_path with
random weights: official .pth repositories (encoder and metric range from the repository), transformers folders,
run.py --load-from and train.py --pretrained-from by name, and the one-line refusal of a name that is not cached."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import ROOT, SUBPROCESS_ENV, assert_same_state, put_in_hub_cache, varying_relative_vits

import run
import train
from dataset.synthetic import write_synthetic_dataset
from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.hub import parse_hub_name, resolve_checkpoint
from depth_anything_v2.loading import CheckpointError, build_model_from_checkpoint, read_checkpoint

SMALL_HF = "depth-anything/Depth-Anything-V2-Small-hf"
HYPERSIM_SMALL = "depth-anything/Depth-Anything-V2-Metric-Hypersim-Small"
RELATIVE_SMALL = "depth-anything/Depth-Anything-V2-Small"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> dict:
    """A hub cache holding a random transformers-format Small-hf folder, and random official relative and
    Hypersim metric vits .pth files; with the models that were saved."""
    root = tmp_path_factory.mktemp("hub")
    cache, files = root / "cache", root / "files"
    relative_hf = varying_relative_vits()
    relative_hf.save_pretrained(files / "small-hf")
    put_in_hub_cache(cache, SMALL_HF, {f: files / "small-hf" / f for f in ("config.json", "model.safetensors")})
    torch.manual_seed(1)
    metric = DepthAnythingV2("vits", max_depth=20.0)
    torch.save(metric.state_dict(), files / "depth_anything_v2_metric_hypersim_vits.pth")
    official = "depth_anything_v2_metric_hypersim_vits.pth"
    put_in_hub_cache(cache, HYPERSIM_SMALL, {official: files / official})
    torch.manual_seed(2)
    relative = DepthAnythingV2("vits")
    torch.save(relative.state_dict(), files / "depth_anything_v2_vits.pth")
    put_in_hub_cache(cache, RELATIVE_SMALL, {"depth_anything_v2_vits.pth": files / "depth_anything_v2_vits.pth"})
    return {"cache": cache, "small_hf": relative_hf, "metric": metric, "relative": relative, "files": files}


@pytest.fixture
def offline_hub(hub_cache, monkeypatch) -> Path:
    """huggingface_hub in this process reads the test cache, offline (it read its environment when imported)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache["cache"]))
    return hub_cache["cache"]


def test_hub_names_and_local_paths(tmp_path, monkeypatch):
    name = parse_hub_name("depth-anything/Depth-Anything-V2-Metric-VKITTI-Large")
    assert (name.repo_id, name.filename) == ("depth-anything/Depth-Anything-V2-Metric-VKITTI-Large",
                                             "depth_anything_v2_metric_vkitti_vitl.pth")  # fmt: skip
    assert name.model_config == {"encoder": "vitl", "max_depth": 80.0}
    name = parse_hub_name(f"{HYPERSIM_SMALL}/depth_anything_v2_metric_hypersim_vits.pth")
    assert name.model_config == {"encoder": "vits", "max_depth": 20.0}
    assert parse_hub_name("depth-anything/Depth-Anything-V2-Base").model_config == {
        "encoder": "vitb",
        "max_depth": None,
    }
    folder = parse_hub_name(SMALL_HF)
    assert (folder.filename, folder.model_config) == (None, None)
    other = parse_hub_name("me/student/weights/latest.pth")
    assert (other.repo_id, other.filename, other.model_config) == ("me/student", "weights/latest.pth", None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for local in ("runs/student/latest.pth", "checkpoints/model.pth", "./a/b", "/abs/x/y", "~/x/y", "model.pth"):
        assert parse_hub_name(local) is None, local
    with pytest.raises(CheckpointError, match="runs/student/latest.pth: checkpoint file not found"):
        resolve_checkpoint("runs/student/latest.pth")


def test_official_repositories_load_by_name_with_their_documented_range(hub_cache, offline_hub):
    metric = DepthAnythingV2.from_pretrained(HYPERSIM_SMALL)
    assert (metric.encoder, metric.max_depth, metric.training) == ("vits", 20.0, False)
    assert_same_state(metric.state_dict(), hub_cache["metric"].state_dict())
    relative = build_model_from_checkpoint(RELATIVE_SMALL)
    assert relative.max_depth is None
    assert_same_state(relative.state_dict(), hub_cache["relative"].state_dict())
    with pytest.raises(CheckpointError, match="trained with max_depth 20.0 m, but max_depth 80.0 was asked for"):
        build_model_from_checkpoint(HYPERSIM_SMALL, max_depth=80.0)
    # A bare copy of the same file says metric by its name, but not the range: the flag is asked for.
    with pytest.raises(CheckpointError, match="needs its metric range: give --max-depth 20"):
        DepthAnythingV2.from_pretrained(hub_cache["files"] / "depth_anything_v2_metric_hypersim_vits.pth")


def test_transformers_folder_by_name_by_folder_and_by_its_weights_file(hub_cache, offline_hub):
    expected = hub_cache["small_hf"].state_dict()
    snapshot = resolve_checkpoint(SMALL_HF).path
    assert snapshot.is_relative_to(offline_hub)
    for source in (SMALL_HF, snapshot, snapshot / "model.safetensors"):
        model = DepthAnythingV2.from_pretrained(source)
        assert model.max_depth is None and model.cam_encoder is None
        assert_same_state(model.state_dict(), expected)
    assert read_checkpoint(SMALL_HF)["model_config"]["encoder"] == "vits"


def test_a_name_that_is_not_cached_fails_at_once_with_the_download_command(offline_hub):
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as error:
        DepthAnythingV2.from_pretrained("depth-anything/Depth-Anything-V2-Base", revision="v1")
    assert time.perf_counter() - start < 5
    message = str(error.value)
    assert "\n" not in message and "depth_anything_v2_vitb.pth not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE=1" in message
    assert "`hf download depth-anything/Depth-Anything-V2-Base depth_anything_v2_vitb.pth --revision v1`" in message
    with pytest.raises(CheckpointError, match=r"did you mean depth-anything/Depth-Anything-V2-Small-hf\?"):
        read_checkpoint("depth-anything/Depth-Anything-V2-Smal-hf")
    with pytest.raises(CheckpointError, match="`hf download me/student config.json model.safetensors`"):
        read_checkpoint("me/student")


def test_run_py_by_hub_name_from_a_hub_cache(hub_cache, tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    env = {**SUBPROCESS_ENV, "HF_HUB_CACHE": str(hub_cache["cache"]), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "run.py", "--load-from", SMALL_HF, "--img-path", str(tmp_path / "photo.png"),
           "--outdir", str(tmp_path / "out"), "--input-size", "56", "--save-numpy", "--device", "cpu",
           "--kernels", "attention=sdpa,head_layout=nchw"]  # fmt: skip
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = hub_cache["small_hf"].infer_image(image, input_size=56)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "photo.npy"), expected, rtol=1e-4, atol=1e-5)
    assert (tmp_path / "out" / "photo.png").is_file()


def test_run_py_refuses_an_uncached_name_in_one_line(offline_hub, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((28, 28, 3), np.uint8))
    argv = ["--load-from", "depth-anything/Depth-Anything-V2-Large", "--img-path", str(tmp_path / "photo.png"),
            "--outdir", str(tmp_path / "out")]  # fmt: skip
    assert run.main(run.get_args_parser().parse_args(argv)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        len(lines) == 1
        and "`hf download depth-anything/Depth-Anything-V2-Large depth_anything_v2_vitl.pth`" in lines[0]
    )
    assert not (tmp_path / "out").exists()


def test_train_py_fine_tunes_a_hub_model_with_a_camera(hub_cache, offline_hub, tmp_path):
    write_synthetic_dataset(tmp_path / "scenes", n_train=4, n_val=1, size=(56, 56), seed=0)
    argv = ["--pretrained-from", HYPERSIM_SMALL, "--use-camera-intrinsics", "--dataset", str(tmp_path / "scenes"),
            "--img-size", "42", "--bs", "2", "--max-steps", "2", "--workers", "0", "--device", "cpu",
            "--freeze-dinov2", "--kernels", "attention=sdpa,head_layout=nchw",
            "--save-path", str(tmp_path / "run")]  # fmt: skip
    train.main(train.get_args_parser().parse_args(argv))
    ckpt = read_checkpoint(tmp_path / "run" / "latest.pth")
    assert ckpt["iteration"] == 2 and ckpt["args"]["pretrained_from"] == HYPERSIM_SMALL
    config = ckpt["model_config"]
    assert (config["encoder"], config["max_depth"], config["use_camera_intrinsics"]) == ("vits", 20.0, True)
    backbone = {k: v for k, v in hub_cache["metric"].state_dict().items() if k.startswith("pretrained.")}
    assert_same_state({k: ckpt["model"][k] for k in backbone}, backbone)  # the hub's weights, frozen
