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

from depth_anything_v2.checksum import with_checksum
from depth_anything_v2.loading import load_weights

from .dist import get_rng_state, set_rng_state
from .metric import LOWER_IS_BETTER

# Each save of latest.pth keeps the file it replaces under this name: the fallback of a resume when latest.pth is
# damaged.
PREVIOUS_NAME = "previous.pth"
# Flags whose value a resume takes from the checkpoint when left out; a different value is refused (see
# `resolve_resume_settings`).
RESUME_KEEPS = {
    "epochs": "its learning-rate schedule (the lr decays to 0 at the end of the last epoch)",
    "freeze_dinov2": "its trained parameters (the optimizer state holds exactly those)",
}


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
    """Write `obj` with its checksum (`depth_anything_v2.checksum`) next to `path` under a hidden temporary name,
    flushed and fsynced; returns that name."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(with_checksum(obj), f)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def publish(tmp: Path, path: Path, keep_previous: bool = False) -> None:
    """Rename the temporary file over `path` and fsync the folder, so the rename itself survives a crash.

    With `keep_previous`, the file `path` held until now becomes PREVIOUS_NAME first (a hard link, so `path`
    exists at every moment; a rename where the file system has no hard links)."""
    if keep_previous and path.exists():
        previous = path.with_name(PREVIOUS_NAME)
        link = path.with_name(f".{PREVIOUS_NAME}.tmp{os.getpid()}")
        try:
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, previous)
        except OSError:
            os.replace(path, previous)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(obj: dict, path: str | os.PathLike, keep_previous: bool = False) -> None:
    """Write atomically: a kill at any moment leaves either the previous file or the new one, never a partial one.
    With `keep_previous`, the file replaced stays as PREVIOUS_NAME."""
    path = Path(path)
    publish(write_temporary(obj, path), path, keep_previous)


def resolve_resume_settings(args: argparse.Namespace, ckpt: dict, path: str) -> None:
    """Take RESUME_KEEPS, --warmup-iters and --clip-grad from a resumed checkpoint when left out (None); refuse a
    different RESUME_KEEPS value, naming what it would break and how to train differently."""
    saved = ckpt.get("args", {})
    for key, kept in RESUME_KEEPS.items():
        given, before = getattr(args, key), saved.get(key)
        if given is None or before is None or given == before:
            setattr(args, key, before if given is None and before is not None else given)
            continue
        flag = f"--{key.replace('_', '-')}"
        shown = (f"{flag} {before}", f"{flag} {given}") if key == "epochs" else (
            f"--{'' if before else 'no-'}freeze-dinov2", f"--{'' if given else 'no-'}freeze-dinov2")  # fmt: skip
        raise SystemExit(
            f"{path} was trained with {shown[0]}, but {shown[1]} was given; a resume keeps {kept}: leave the flag "
            f"out{' (--max-steps stops earlier)' if key == 'epochs' else ''}, or train differently in a new run "
            f"from its weights: --pretrained-from {path} --save-path NEW_FOLDER"
        )
    for key in ("warmup_iters", "clip_grad"):
        if getattr(args, key) is None:
            setattr(args, key, saved.get(key))


def run_complete_message(ckpt: dict, path: str, args: argparse.Namespace) -> str | None:
    """What to say when a resumed checkpoint has nothing left to train (its schedule is done, or it stopped at
    this --max-steps with its final weights evaluated), with how to train longer; None when it has."""
    iteration = ckpt["iteration"]
    if ckpt["epoch"] >= args.epochs:
        return (
            f"{path}: the run is complete ({args.epochs} epochs, {iteration} iterations): nothing to train. Its "
            f"learning-rate schedule has ended, so --resume cannot extend it; to train longer, start a new run from "
            f"its weights: --pretrained-from {path} --save-path NEW_FOLDER (with its own schedule and warm-up)"
        )
    if args.max_steps and iteration >= args.max_steps and ckpt.get("evaluated_iteration") == iteration:
        return (
            f"{path}: the run stopped at --max-steps {args.max_steps} (iteration {iteration} of its schedule's "
            f"{ckpt.get('total_iters', '?')}): nothing to train. To continue it, resume with a larger --max-steps, "
            f"or 0 to train to the end of its {args.epochs} epochs"
        )
    return None


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
