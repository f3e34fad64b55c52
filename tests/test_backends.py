"""run.py / run_video.py --backend onnxruntime | openvino: the export on first use and its cache, parity of each
backend with fp32 torch, an .onnx file given directly (fixed input size), batches, and the precision rules."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch
from helpers import varying_relative_vits

from dataset.io import DataError
from inference.backends import resolve_precision
from inference.onnx_export import cache_key
from run import get_args_parser, main
from run_video import get_args_parser as video_args_parser
from run_video import main as video_main
from util.precision import has_fast_bf16

SIZE = "70"  # 96 x 128 images -> 70 x 98 network inputs


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """An official-style relative vits state dict, three 96 x 128 images and a 96 x 128 video of 4 frames."""
    folder = tmp_path_factory.mktemp("backends")
    model = varying_relative_vits()
    torch.save(model.state_dict(), folder / "official_vits.pth")
    (folder / "images").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        ramp = np.linspace(0, 255, 128)[None, :, None] * np.ones((96, 1, 3))
        cv2.imwrite(str(folder / "images" / name), np.clip(ramp + rng.integers(0, 60, (96, 128, 3)), 0, 255))
    writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 8.0, (128, 96))
    for i in range(4):
        writer.write(np.roll(cv2.imread(str(folder / "images" / "a.png")), 8 * i, axis=1))
    writer.release()
    return {"folder": folder, "ckpt": folder / "official_vits.pth"}


def run(data, out, *extra: str) -> int:
    argv = ["--load-from", str(data["ckpt"]), "--img-path", str(data["folder"] / "images"), "--outdir", str(out)]
    return main(get_args_parser().parse_args([*argv, "--input-size", SIZE, "--save-numpy", *map(str, extra)]))


def depths(out) -> np.ndarray:
    return np.stack([np.load(out / f"{name}.npy") for name in "abc"])


def _median_relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.median(np.abs(a - b) / np.abs(b)))


def test_each_backend_matches_torch_and_the_export_is_cached(data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    assert run(data, tmp_path / "torch") == 0
    reference = depths(tmp_path / "torch")
    assert run(data, tmp_path / "ort", "--backend", "onnxruntime") == 0
    assert "exporting" in caplog.text and "once: cached in" in caplog.text
    [entry] = list((data["folder"] / "onnx_cache").iterdir())  # beside the checkpoint, one export for 70 x 98
    assert entry.name.startswith("official_vits-70x98-") and (entry / "model.onnx").is_file()
    assert _median_relative(depths(tmp_path / "ort"), reference) <= 1e-4
    caplog.clear()
    assert run(data, tmp_path / "ov", "--backend", "openvino", "--batch-size", "2") == 0
    assert "from the cache" in caplog.text and "exporting" not in caplog.text
    precision = "bf16" if has_fast_bf16(torch.device("cpu")) else "fp32"
    assert f"OpenVINO inference precision: {precision}" in caplog.text
    assert _median_relative(depths(tmp_path / "ov"), reference) <= 0.005

    # The cached graph given as an .onnx file: the same depth; an image of another size is resized to its 70 x 98.
    graph = str(entry / "model.onnx")
    assert run(data, tmp_path / "file", "--backend", "onnxruntime", "--load-from", graph) == 0
    np.testing.assert_allclose(depths(tmp_path / "file"), depths(tmp_path / "ort"), rtol=1e-5)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(data["folder"] / "images" / "a.png")), (100, 60)))
    argv = ["--load-from", graph, "--img-path", str(small), "--outdir", str(tmp_path / "s"), "--backend", "openvino"]
    assert main(get_args_parser().parse_args([*argv, "--save-numpy"])) == 0
    assert np.load(tmp_path / "s" / "small.npy").shape == (60, 100)

    # A video through the same cache.
    argv = ["--load-from", str(data["ckpt"]), "--video-path", str(data["folder"] / "clip.mp4"), "--input-size", SIZE]
    argv += ["--outdir", str(tmp_path / "video"), "--backend", "onnxruntime", "--save-numpy", "--batch-size", "3"]
    assert video_main(video_args_parser().parse_args(argv)) == 0
    assert len(list((tmp_path / "video" / "clip").glob("*.npy"))) == 4
    assert len(list((data["folder"] / "onnx_cache").iterdir())) == 1


def test_batches_give_the_depth_of_single_images(data, tmp_path):
    assert run(data, tmp_path / "one") == 0
    assert run(data, tmp_path / "two", "--batch-size", "2") == 0
    np.testing.assert_allclose(depths(tmp_path / "two"), depths(tmp_path / "one"), rtol=1e-4, atol=1e-5)


def test_refused_backend_settings(data, tmp_path, capsys):
    (tmp_path / "model.onnx").write_bytes(b"not a graph")
    cases = [
        (["--backend", "onnxruntime", "--precision", "bf16"], "runs fp32 only"),
        (["--backend", "openvino", "--compile"], "--compile is for --backend torch"),
        (["--backend", "openvino", "--precision", "fp16"], "OpenVINO on the CPU runs bf16 or fp32"),
        (["--load-from", tmp_path / "model.onnx"], "is an ONNX model: add --backend onnxruntime"),
        (["--load-from", tmp_path / "model.onnx", "--backend", "openvino"], "not a readable ONNX model"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
    ]
    for argv, message in cases:
        assert run(data, tmp_path / "o", *argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    with pytest.raises(DataError, match="runs on the CPU; drop --device cuda"):
        resolve_precision("openvino", "auto", torch.device("cuda"))


def test_cache_key_follows_the_checkpoint_and_the_size(data, tmp_path):
    ckpt = tmp_path / "c.pth"
    ckpt.write_bytes(data["ckpt"].read_bytes())
    config = {"encoder": "vits", "max_depth": None}
    key = cache_key(ckpt, config, 70, 98)
    assert key == cache_key(ckpt, config, 70, 98) and key != cache_key(ckpt, config, 98, 70)
    assert key != cache_key(ckpt, {**config, "max_depth": 20.0}, 70, 98)
    ckpt.write_bytes(data["ckpt"].read_bytes() + b"\0")  # retrained: another size and modification time
    assert key != cache_key(ckpt, config, 70, 98)
