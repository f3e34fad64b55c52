"""Shared test fixtures: deterministic official-format weights and small models on CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PARITY = Path(__file__).parent / "fixtures" / "parity"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(PARITY))

from weights import deterministic_state_dict  # noqa: E402

torch.set_num_threads(2)


def manifest(kind: str, encoder: str) -> dict:
    """{key: shape} of the official model ('relative' | 'metric')."""
    return json.loads((PARITY / f"manifest_{kind}_{encoder}.json").read_text())


@pytest.fixture(scope="session")
def vits_weights() -> dict:
    """The parity-recipe vits state dict (identical for the relative and the metric heads)."""
    return deterministic_state_dict(manifest("metric", "vits"))
