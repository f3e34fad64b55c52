"""run_video.py (and a video given to run.py) on generated mp4s with random-weight vits models: the official
command, one output per input with the input's frame count, rate and size, colours on one range across frames,
intrinsics on every frame, raw depth per frame, and bad videos."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import varying_relative_vits

from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.geometry import make_intrinsics
from inference.raw_depth import read_png16
from inference.video import ColourRange
from run import get_args_parser as image_args_parser
from run import main as image_main
from run_video import get_args_parser, main
from util.checkpoint import save_checkpoint
from util.vis import colorize

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
FRAMES, FPS, H, W = 6, 12.0, 84, 112


def write_video(path, frames: int = FRAMES, shift: int = 6) -> None:
    """A textured 84 x 112 scene panning right by `shift` px per frame, mp4v."""
    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (H, W + shift * frames, 3), dtype=np.uint8), (5, 5), 0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for i in range(frames):
        writer.write(np.ascontiguousarray(scene[:, shift * i : shift * i + W]))
    writer.release()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """checkpoints/depth_anything_v2_vits.pth (official relative layout), a metric camera checkpoint, 2 videos."""
    folder = tmp_path_factory.mktemp("video")
    relative = varying_relative_vits()
    (folder / "checkpoints").mkdir()
    torch.save(relative.state_dict(), folder / "checkpoints" / "depth_anything_v2_vits.pth")
    metric = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True).eval()
    with torch.no_grad():
        for p in metric.cam_encoder.parameters():
            p.normal_(0.0, 0.1)
    save_checkpoint({"model": metric.state_dict(), "model_config": metric.config}, folder / "metric.pth")
    (folder / "videos").mkdir()
    write_video(folder / "videos" / "pan.mp4")
    write_video(folder / "videos" / "short.avi", frames=3)
    return {"folder": folder, "metric": metric}


def video_properties(path) -> tuple[int, float, int, int]:
    """(decoded frame count, frame rate, width, height)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    props = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    capture.release()
    return count, props[0], props[1], height


def test_official_command_one_output_per_video(data):
    folder = data["folder"]
    cmd = [sys.executable, str(ROOT / "run_video.py"), "--encoder", "vits", "--video-path", "videos", "--outdir",
           "video_depth_vis", "--input-size", "56"]  # fmt: skip
    result = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "frames/s ->" in result.stderr and "\r" not in result.stderr  # piped: the rate in a log line, no bar
    out = folder / "video_depth_vis"
    assert sorted(p.name for p in out.iterdir()) == ["pan.mp4", "short.mp4"]
    assert video_properties(out / "pan.mp4") == (FRAMES, FPS, 2 * W + 50, H)
    assert video_properties(out / "short.mp4") == (3, FPS, 2 * W + 50, H)


def test_metric_colours_fixed_across_frames_and_K_on_every_frame(data, tmp_path, monkeypatch):
    written = []

    class Recorder:
        """Stands in for cv2.VideoWriter: keeps the frames (mp4v is lossy, so colours are checked before it)."""

        def __init__(self, path, fourcc, fps, size):
            written.append({"path": path, "fps": fps, "size": size, "frames": []})

        def isOpened(self):
            return True

        def write(self, frame):
            written[-1]["frames"].append(frame)

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoWriter", Recorder)
    K = make_intrinsics(90.0, 90.0, 55.5, 41.5)
    video = data["folder"] / "videos" / "pan.mp4"
    argv = ["--load-from", str(data["folder"] / "metric.pth"), "--video-path", str(video), "--outdir", str(tmp_path),
            "--input-size", "56", "--pred-only", "--save-numpy", "--save-png16", "--intrinsics", "90,90,55.5,41.5",
            "--batch-size", "4"]  # fmt: skip
    assert main(get_args_parser().parse_args(argv)) == 0
    [output] = written
    assert output["fps"] == FPS and output["size"] == (W, H) and len(output["frames"]) == FRAMES
    capture = cv2.VideoCapture(str(video))
    for i, frame in enumerate(output["frames"]):
        depth = np.load(tmp_path / "pan" / f"{i:06d}.npy")
        # One range for the video, [0, max depth]: the colours are a function of the depth alone.
        np.testing.assert_array_equal(frame, colorize(depth, 0.0, 20.0))
        np.testing.assert_allclose(read_png16(tmp_path / "pan" / f"{i:06d}.depth16.png"), depth, atol=5e-4)
        ok, raw = capture.read()
        np.testing.assert_allclose(depth, data["metric"].infer_image(raw, 56, intrinsics=K), rtol=1e-4, atol=1e-5)
    capture.release()


def test_relative_range_runs_smoothly_and_metric_range_is_fixed():
    rng = np.random.default_rng(0)
    still = rng.uniform(1.0, 3.0, (40, 50))
    running = ColourRange(None)
    first = running.update(still)
    assert first == pytest.approx(tuple(np.percentile(still, [2, 98])))
    assert running.update(still) == pytest.approx(first)  # a still scene keeps its colours
    near = still.copy()
    near[:20] *= 4  # something comes close: a per-frame min-max would rescale every pixel at once
    low, high = running.update(near)
    assert high - first[1] == pytest.approx(0.1 * (np.percentile(near, 98) - first[1]))
    metric = ColourRange(20.0)
    assert metric.update(still) == metric.update(near) == (0.0, 20.0)


def test_run_py_takes_a_video_and_bad_videos_are_reported(data, tmp_path, capsys):
    folder = data["folder"]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "pan.mp4").write_bytes((folder / "videos" / "pan.mp4").read_bytes())
    (tmp_path / "in" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 20)
    argv = ["--load-from", str(folder / "checkpoints" / "depth_anything_v2_vits.pth"), "--outdir", str(tmp_path / "o"),
            "--input-size", "56", "--device", "cpu"]  # fmt: skip
    assert image_main(image_args_parser().parse_args([*argv, "--img-path", str(tmp_path / "in" / "pan.mp4")])) == 0
    assert video_properties(tmp_path / "o" / "pan.mp4") == (FRAMES, FPS, 2 * W + 50, H)
    assert main(get_args_parser().parse_args([*argv, "--video-path", str(tmp_path / "in")])) == 1
    err = capsys.readouterr().err
    assert "1 of 2 videos failed" in err and f"{tmp_path / 'in' / 'broken.mp4'}: cannot read video" in err
    (tmp_path / "empty").mkdir()
    cv2.imwrite(str(tmp_path / "empty" / "x.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(get_args_parser().parse_args([*argv, "--video-path", str(tmp_path / "empty")])) == 2
    assert "no videos (.mp4" in capsys.readouterr().err
    # The output must not replace the input.
    argv[argv.index("--outdir") + 1] = str(tmp_path / "in")
    assert main(get_args_parser().parse_args([*argv, "--video-path", str(tmp_path / "in" / "pan.mp4")])) == 1
    assert "would replace the input video" in capsys.readouterr().err
