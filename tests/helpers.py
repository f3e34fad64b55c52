"""Builders shared by the tests: paths, subprocess environments, train.py argument lists, run-folder readers."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

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

def save_checkpoint(obj, path):
    tmp = checkpoint.write_temporary(obj, Path(path))
    if obj.get("iteration") == at:
        time.sleep(seconds)
    checkpoint.publish(tmp, Path(path))

checkpoint.save_checkpoint = save_checkpoint
sys.argv = ["train.py", *sys.argv[3:]]
runpy.run_path({str(ROOT / "train.py")!r}, run_name="__main__")
"""


def train_args(data: Path, save_path: Path, *extra: str, pretrained: str = "init.pth") -> list[str]:
    """train.py flags of a tiny CPU run on `data/scenes` (vits, 70 px, batch 2), started from `data/pretrained`."""
    return [
        "--encoder", "vits", "--dataset", str(data / "scenes"), "--img-size", "70", "--max-depth", "10",
        "--bs", "2", "--workers", "0", "--device", "cpu",
        "--pretrained-from", str(data / pretrained), "--save-path", str(save_path), *extra,
    ]  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    """The events of a metrics.jsonl."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_state(a: dict, b: dict) -> None:
    """Two state dicts with the same keys and bitwise equal tensors."""
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def wait_for(predicate, timeout: float = 120.0) -> None:
    """Poll `predicate` until it holds; TimeoutError after `timeout` seconds."""
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)
