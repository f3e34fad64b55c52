"""Training checkpoints: the loop's state, what `latest.pth` / `best.pth` hold, atomic writes and resuming.

Reading any weight file (ours or official) is the model package's job (`depth_anything_v2.loading`); this module
adds what only a training run needs: the optimizer, the scaler, the RNG and the position in the schedule.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from depth_anything_v2.loading import load_weights

from .dist import get_rng_state, set_rng_state
from .metric import LOWER_IS_BETTER


@dataclass
class TrainState:
    """Where a run stands; saved in every checkpoint (`asdict`) and restored by `resume`.

    Attributes:
        epoch: current epoch (0-based).
        epoch_step: optimizer steps done in the current epoch.
        iteration: optimizer steps done in the whole run.
        total_iters: steps of the whole schedule (epochs x steps per epoch).
        skipped: steps skipped for a non-finite loss or gradient, over the run.
        consecutive_skipped: skipped steps in a row, up to the last one.
        previous_best: best value of every evaluation metric so far (|zoom_slope| for the zoom slope).
        evaluated_iteration: the iteration whose weights were last evaluated (-1: none yet), so that a run
            resumed after a kill inside an evaluation runs it again, and none runs twice.
    """

    total_iters: int
    epoch: int = 0
    epoch_step: int = 0
    iteration: int = 0
    skipped: int = 0
    consecutive_skipped: int = 0
    previous_best: dict[str, float] = field(default_factory=dict)
    evaluated_iteration: int = -1


def training_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    state: TrainState,
    args: argparse.Namespace,
    world_size: int,
    sampler_state: dict | None = None,
) -> dict:
    """Everything a resume needs, as tensors and primitives only (loadable with weights_only=True); `sampler_state`
    is the training sampler's `state_dict` (the mixture's position, per-dataset draws)."""
    return {
        "world_size": world_size,
        "model": model.state_dict(),
        "model_config": model.config,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler else None,
        **asdict(state),
        "args": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()},
        "rng": get_rng_state(),
        "sampler": sampler_state,
    }


def check_resume_matches(ckpt: dict, path: str, args: argparse.Namespace, world_size: int) -> None:
    """Refuse to resume with another per-process batch size, accumulation or number of processes: the saved
    position in the schedule and in the sampler's shard are counted in steps of that size, so they would be
    misread."""
    saved = ckpt.get("args", {})
    for flag, before, now in (
        ("--bs", saved.get("bs"), args.bs),
        ("--accum-iter", saved.get("accum_iter", 1), args.accum_iter),
        ("the number of processes (torchrun --nproc_per_node x --nnodes)", ckpt.get("world_size"), world_size),
    ):
        if before is not None and before != now:
            raise SystemExit(
                f"{path} was trained with {flag} {before}, this run has {now}: a resume must keep it (its schedule "
                f"and sampler position count steps of that size); resume with {before}, or start a new run "
                "with --pretrained-from"
            )


def resume(
    ckpt: dict,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    state: TrainState,
) -> None:
    """Load a `training_checkpoint` (already read) into the model, optimizer, scaler, RNG and `state` (in place).

    `state.total_iters` keeps the value of the current run.
    """
    load_weights(model, ckpt)
    optimizer.load_state_dict(ckpt["optimizer"])
    if scaler and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    for item in fields(TrainState):
        if item.name != "total_iters" and item.name in ckpt:
            setattr(state, item.name, ckpt[item.name])
    set_rng_state(ckpt["rng"])


def write_temporary(obj: dict, path: Path) -> Path:
    """Write `obj` next to `path` under a hidden temporary name, flushed and fsynced; returns that name."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def publish(tmp: Path, path: Path) -> None:
    """Rename the temporary file over `path` and fsync the folder, so the rename itself survives a crash."""
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(obj: dict, path: str | os.PathLike) -> None:
    """Write atomically: a kill at any moment leaves either the previous file or the new one, never a partial one."""
    path = Path(path)
    publish(write_temporary(obj, path), path)


def update_best(previous_best: dict[str, float], results: dict[str, float]) -> bool:
    """Track the best value of every metric; True when abs_rel improved (best.pth is then written)."""
    improved = False
    for key, value in results.items():
        if not math.isfinite(value):
            continue
        lower = key in LOWER_IS_BETTER or key == "zoom_slope"
        best = previous_best.get(key)
        value_cmp = abs(value) if key == "zoom_slope" else value
        if best is None or (value_cmp < best if lower else value_cmp > best):
            previous_best[key] = value_cmp
            improved |= key == "abs_rel"
    return improved
