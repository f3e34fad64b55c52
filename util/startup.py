"""The start of a training run, before any data is read: flags checked before any file is read, settings
resolved, checkpoints read, the run folder locked and checked (rank 0), logging and seeds; and `begin_run`, the
first writes into the run folder once every check has passed.

A refusal before `begin_run` leaves the run folder as it was: train.log is held in memory until then, --overwrite
deletes nothing until then, and the lock file is removed when the process ends.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from contextlib import ExitStack
from pathlib import Path

import torch

from .checkpoint import PREVIOUS_NAME, check_resume_matches, run_complete_message
from .dist import DistInfo, barrier, cleanup_distributed, init_distributed, seed_all
from .logger import attach_run_log, hold_run_log, setup_logging
from .precision import resolve_precision, teacher_uses_bf16
from .run_folder import DAMAGED_NAME, check_run_folder, check_save_path, clear_run_folder
from .run_lock import RunLock
from .settings import Sources, check_flags, check_mixture_matches, check_model_args, read_source

logger = logging.getLogger(__name__)


def start(args: argparse.Namespace, stack: ExitStack) -> tuple[DistInfo, Path, Sources, list[Path]] | None:
    """Join the process group, check the flags (before any file is read), resolve the settings, read the
    checkpoints, lock and check the run folder (rank 0), set up logging and seeds. None: a resumed run that is
    already complete (said in the log)."""
    info = init_distributed(args.device, args.dist_timeout)
    stack.callback(cleanup_distributed)
    setup_logging(info.is_main)
    if info.is_main and not args.eval_only:
        hold_run_log()  # train.log starts once every check has passed (`begin_run`)
    check_flags(args, info)
    args.precision, args.precision_reason, slow = resolve_precision(args.precision, info.device)
    bf16_teacher = teacher_uses_bf16(args.teacher_precision, args.precision, info.device)
    args.teacher_precision = "bf16" if bf16_teacher else "fp32"
    sources = read_source(args)
    check_model_args(args)
    changes = []
    if sources.resume is not None:
        check_resume_matches(sources.resume, args.resume, args, info.world_size)
        changes = check_mixture_matches(sources.resume, args.resume, args)
    done = sources.resume and run_complete_message(sources.resume, args.resume, args)
    if done:
        logger.info("%s", done)
        return None
    save_path = Path(args.save_path) if args.save_path else Path(args.pretrained_from).parent
    overwritten: list[Path] = []
    if info.is_main:
        if not args.eval_only:
            lock = RunLock(save_path)
            lock.acquire()  # before anything is written into the folder
            stack.callback(lock.release)
        check_save_path(save_path)
        if not args.eval_only:
            overwritten = check_run_folder(save_path, sources.resume is not None, args.overwrite)
    barrier()
    if info.is_main and args.eval_only and args.save_path:
        attach_run_log(save_path)
    seed_all(args.seed + info.rank)
    logger.info(
        "world size %d, device %s, torch %s, per-process batch %d x %d accumulated (effective %d per step), "
        "lr backbone %.2e head %.2e",
        info.world_size, info.device, torch.__version__, args.bs, args.accum_iter,
        args.bs * args.accum_iter * info.world_size, args.lr, args.lr * 10,
    )  # fmt: skip
    logger.info("precision %s (%s)", args.precision, args.precision_reason)
    if slow:
        logger.warning("%s", slow)
    if sources.resume is not None:
        logger.info("resuming from %s (iteration %d)", args.resume, sources.resume["iteration"])
    elif not args.eval_only:
        note = " (--resume auto: no latest.pth yet)" if args.resume == "auto" else ""
        logger.info("starting a new run in %s%s", save_path, note)
    if changes:
        logger.warning("--change-mixture: resuming %s on another mixture: %s", args.resume, "; ".join(changes))
    return info, save_path, sources, overwritten


def begin_run(args: argparse.Namespace, save_path: Path, overwritten: list[Path], damaged: Path | None) -> None:
    """Rank 0, once every check has passed: clear the run --overwrite replaces, set a damaged latest.pth aside,
    start train.log and write config.json (the resolved settings)."""
    clear_run_folder(save_path, overwritten)
    for stale in save_path.glob(".*.tmp*"):
        stale.unlink()  # left by a process killed inside a checkpoint write
    attach_run_log(save_path)
    if damaged is not None and damaged.exists():
        os.replace(damaged, damaged.with_name(DAMAGED_NAME))
        logger.warning("moved the damaged %s to %s", damaged, DAMAGED_NAME)
    logger.info(
        "checkpoints carry a checksum verified on every load; each save of latest.pth keeps the one it replaces as "
        "%s, the fallback of --resume when latest.pth is damaged",
        PREVIOUS_NAME,
    )
    (save_path / "config.json").write_text(json.dumps(vars(args), indent=2, default=str))
