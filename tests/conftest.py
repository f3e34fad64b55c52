"""Shared test fixtures: deterministic official-format weights and small models on CPU."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PARITY = Path(__file__).parent / "fixtures" / "parity"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(PARITY))

from weights import deterministic_state_dict  # noqa: E402

torch.set_num_threads(2)

# Kernel choices (depth_anything_v2/kernels.py) are timed once per shape into a cache of this test session, not the
# user's ~/.cache; set before helpers.SUBPROCESS_ENV copies the environment, so train.py / run.py runs share it.
_KERNEL_CACHE = tempfile.mkdtemp(prefix="da2-test-kernels-")
atexit.register(shutil.rmtree, _KERNEL_CACHE, ignore_errors=True)
os.environ["DA2_KERNEL_CACHE"] = str(Path(_KERNEL_CACHE) / "kernels.json")
# Nothing in the tests touches the network: hub names load from caches the tests build (tests/test_hub.py).
os.environ["HF_HUB_OFFLINE"] = "1"


def manifest(kind: str, encoder: str) -> dict:
    """{key: shape} of the official model ('relative' | 'metric')."""
    return json.loads((PARITY / f"manifest_{kind}_{encoder}.json").read_text())


@pytest.fixture(scope="session")
def vits_weights() -> dict:
    """The parity-recipe vits state dict (identical for the relative and the metric heads)."""
    return deterministic_state_dict(manifest("metric", "vits"))
