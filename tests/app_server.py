"""Builders for the web-demo tests: small random-weight checkpoints, a test photo, and app.py served on a free
127.0.0.1 port in a subprocess that stops when the test ends (or by itself after a deadline)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch

from depth_anything_v2 import DepthAnythingV2

ROOT = Path(__file__).resolve().parents[1]
INPUT_SIZE = 70
# The server exits by itself after this many seconds, even if the test process dies without stopping it.
SERVER_DEADLINE_S = 600
# app.py run with a watchdog timer in front of it: argv = [deadline, app.py flags...].
WATCHED_APP = f"""
import os, runpy, sys, threading
threading.Timer(float(sys.argv[1]), os._exit, (3,)).start()
sys.argv = ["app.py", *sys.argv[2:]]
sys.path.insert(0, {str(ROOT)!r})
runpy.run_path({str(ROOT / "app.py")!r}, run_name="__main__")
"""


def save_model(path: Path, camera: bool, max_depth: float | None, seed: int = 0) -> Path:
    """A random-weight vits checkpoint in our format ({"model", "model_config"}).

    A camera model gets the log-depth prior of a trained one, depth proportional to focal length (focal weight 1);
    its other camera weights stay random (the injection starts at zero, so they do not change the output). A
    relative model's last bias is raised so that its disparity is positive (random weights give ReLU zeros).
    """
    torch.manual_seed(seed)
    model = DepthAnythingV2("vits", max_depth=max_depth, use_camera_intrinsics=camera).eval()
    with torch.no_grad():
        if camera:
            model.cam_encoder.focal_weight.fill_(1.0)
        if max_depth is None:
            model.depth_head.scratch.output_conv2[2].bias.add_(1.0)
    torch.save({"model": model.state_dict(), "model_config": model.config}, path)
    return path


def write_photo(path: Path, width: int = 160, height: int = 120) -> Path:
    """A textured test picture (gradient, rectangles, a disc) as PNG or JPEG, by suffix."""
    v, u = np.mgrid[0:height, 0:width]
    image = np.stack([u * 255 // width, v * 255 // height, (u + v) * 127 // (width + height) + 64], axis=-1)
    image = image.astype(np.uint8)
    cv2.rectangle(image, (width // 8, height // 6), (width // 2, height // 2), (20, 200, 240), -1)
    cv2.circle(image, (3 * width // 4, 2 * height // 3), height // 5, (230, 40, 90), -1)
    cv2.imwrite(str(path), image)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(tmp: Path, *flags: str, startup_s: float = 120.0) -> Iterator[str]:
    """Run `python app.py --port PORT FLAGS` and yield its URL once it answers; stop it afterwards.

    Its output goes to tmp/app.log (shown if it fails to start); Gradio's files go to tmp/gradio.
    """
    port = free_port()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "2",
        "PYTHONPATH": str(ROOT),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    log_path = tmp / "app.log"
    command = [sys.executable, "-c", WATCHED_APP, str(SERVER_DEADLINE_S), "--port", str(port), *flags]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        deadline = time.time() + startup_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.time() > deadline:
                raise TimeoutError(f"app.py did not answer within {startup_s:g} s:\n{log_path.read_text()[-3000:]}")
            try:
                with direct.open(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
