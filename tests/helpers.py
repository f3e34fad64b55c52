"""Builders shared by the tests: paths, subprocess environments, train.py argument lists, run-folder readers."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch

from dataset.synthetic import write_synthetic_dataset
from depth_anything_v2 import DepthAnythingV2

ROOT = Path(__file__).resolve().parents[1]
# Subprocesses use the thread count of the in-process runs (conftest), so their arithmetic is bitwise equal.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}

# train.py with a checkpoint write that pauses between writing its temporary file and renaming it, at one
# iteration: `python -c PAUSED_SAVE_TRAIN ITERATION SECONDS train.py-arguments...` (a fault-injection harness).
PAUSED_SAVE_TRAIN = f"""
import runpy, sys, time
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
import util.checkpoint as checkpoint
at, seconds = int(sys.argv[1]), float(sys.argv[2])

def save_checkpoint(obj, path, keep_previous=False):
    tmp = checkpoint.write_temporary(obj, Path(path))
    if obj.get("iteration") == at:
        time.sleep(seconds)
    checkpoint.publish(tmp, Path(path), keep_previous)

checkpoint.save_checkpoint = save_checkpoint
sys.argv = ["train.py", *sys.argv[3:]]
runpy.run_path({str(ROOT / "train.py")!r}, run_name="__main__")
"""

# train.py whose global rank KILL_RANK (0 without torchrun) kills itself with SIGKILL at the start of optimizer step
# KILL_STEP of its first attempt (torchelastic's restart count 0): `killing_train.py KILL_RANK KILL_STEP
# train.py-arguments...`.
KILLING_TRAIN = f"""
import os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
import train, util.engine
rank, step = sys.argv[1], int(sys.argv[2])
original, calls = util.engine.set_lr, []

def set_lr(optimizer, lr):
    calls.append(lr)
    first = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if os.environ.get("RANK", "0") == rank and first and len(calls) > step:
        os.kill(os.getpid(), signal.SIGKILL)
    original(optimizer, lr)

util.engine.set_lr = set_lr
train.main(train.get_args_parser().parse_args(sys.argv[3:]))
"""
# Fixed kernels for runs compared bit for bit (no kernel timing in these tiny runs).
KERNELS = ("--kernels", "attention=sdpa,head_layout=channels_last,linear=aten")


def write_run_data(
    root: Path, n_train: int, n_val: int, size: tuple[int, int], seed: int, name: str = "init.pth"
) -> Path:
    """Synthetic scenes under `root/scenes` and a seeded random vits metric model (10 m) as `root/name`."""
    write_synthetic_dataset(root / "scenes", n_train=n_train, n_val=n_val, size=size, seed=seed)
    torch.manual_seed(0)
    torch.save(DepthAnythingV2("vits", max_depth=10.0).state_dict(), root / name)
    return root


def put_in_hub_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """Put files into a Hugging Face hub cache as a download would (huggingface_hub's documented cache layout:
    refs/main names a commit, snapshots/<commit>/<file> links to blobs/<hash>), so that offline loading finds them.
    Returns the snapshot folder."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for name, source in files.items():
        data = Path(source).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(os.path.relpath(blob, (snapshot / name).parent))
    return snapshot


def varying_relative_vits() -> DepthAnythingV2:
    """A seeded random relative vits in eval mode whose disparity varies: a random head's final ReLU is zero
    everywhere, so its last bias is set to 1."""
    torch.manual_seed(0)
    model = DepthAnythingV2("vits").eval()
    with torch.no_grad():
        model.depth_head.scratch.output_conv2[2].bias.fill_(1.0)
    return model


def train_args(data: Path, save_path: Path, *extra: str, pretrained: str = "init.pth") -> list[str]:
    """train.py flags of a tiny CPU run on `data/scenes` (vits, 70 px, batch 2, fp32 arithmetic whether or not the
    CPU has native bf16), started from `data/pretrained`."""
    return [
        "--encoder", "vits", "--dataset", str(data / "scenes"), "--img-size", "70", "--max-depth", "10",
        "--bs", "2", "--workers", "0", "--device", "cpu", "--precision", "fp32",
        "--pretrained-from", str(data / pretrained), "--save-path", str(save_path), *extra,
    ]  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    """The events of a metrics.jsonl."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_state(a: dict, b: dict) -> None:
    """Two state dicts with the same keys and bitwise equal tensors."""
    assert a.keys() == b.keys()
    for key in a:
        if not torch.equal(a[key], b[key]):  # assert_close only for its message: it is slow on ~700 tensors
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def wait_for(predicate, timeout: float = 120.0) -> None:
    """Poll `predicate` until it holds; TimeoutError after `timeout` seconds."""
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def write_oriented_image(path: Path, rgb, orientation: int) -> None:
    """Write an RGB uint8 (H, W, 3) image as .jpg or .png carrying an EXIF orientation tag (APP1 / eXIf chunk),
    which OpenCV applies when it decodes the file: orientations 5-8 turn it a quarter turn."""
    import struct
    import zlib

    import cv2

    tiff = b"MM" + struct.pack(">HIH", 42, 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + bytes(4)
    data = cv2.imencode(path.suffix, rgb[..., ::-1])[1].tobytes()
    if path.suffix == ".png":  # the eXIf chunk right after IHDR (8-byte signature + 25-byte IHDR chunk)
        chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
        data = data[:33] + chunk + data[33:]
    else:  # the APP1 segment right after the start-of-image marker
        payload = b"Exif\x00\x00" + tiff
        data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]
    path.write_bytes(data)
