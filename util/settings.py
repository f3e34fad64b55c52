"""The settings a run resolves before any work: the model's from our checkpoints or the flags, the zoom, the run folder.

A run is never silently wrong: a flag that conflicts with what a checkpoint says stops the run naming the file,
both values and the flag that resolves it, and every default filled in here is written back to `args`, so that
config.json and the checkpoint's `args` hold what actually ran.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

from dataset.mixture import mixture_differences
from depth_anything_v2.configs import BACKBONE_CONFIGS, PATCH_SIZE
from depth_anything_v2.hub import resolve_checkpoint
from depth_anything_v2.kernels import parse_kernels
from depth_anything_v2.loading import CheckpointError, checkpoint_config, read_checkpoint

from .dist import DistInfo

logger = logging.getLogger(__name__)

# The student's model settings: argparse leaves them None when not given, so a checkpoint can fill them in.
MODEL_DEFAULTS = {"encoder": "vitl", "max_depth": 20.0, "use_camera_intrinsics": False, "cam_token_inject_layer": 0}
DEFAULT_ZOOM_RANGE = (0.7, 2.0)
# What a run that reached training leaves; a fresh run into a folder with any of these stops (`check_run_folder`).
RUN_FILES = ("latest.pth", "best.pth", "metrics.jsonl")
RUN_GLOBS = ("events.out.tfevents.*",)
RUN_FOLDERS = ("teacher_cache",)
# Also deleted by --overwrite: the log and the settings of that run, and a temporary file of a killed write.
RUN_EXTRAS = ("train.log", "config.json", "eval.json")


class SettingsError(SystemExit):
    """A flag that conflicts with a checkpoint or with another flag: the message says which and how to fix it."""


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _show(key: str, value: object) -> str:
    if key == "max_depth":
        return "relative (no max depth)" if value is None else f"{value:g} m"
    return repr(value)


def resolve_model_settings(args: argparse.Namespace, stored: dict | None, source: str, purpose: str) -> None:
    """Fill the model flags of `args` from a checkpoint's model_config (or the defaults) and check conflicts.

    Args:
        args: parsed train.py flags; encoder, max_depth, use_camera_intrinsics, cam_token_inject_layer are None
            where not given, and are set here.
        stored: the model_config of one of our checkpoints, or None (official weights or a fresh model).
        source: the checkpoint's path, for messages.
        purpose: 'resume' and 'eval' must match the checkpoint exactly; 'finetune' (--pretrained-from) may add a
            camera encoder or change --max-depth (said in the log).
    """
    for key, default in MODEL_DEFAULTS.items():
        given = getattr(args, key)
        if stored is None:
            setattr(args, key, default if given is None else given)
            continue
        value = stored.get(key, default)
        if given is None:
            setattr(args, key, value if not (key == "max_depth" and value is None) else default)
            continue
        if given == value:
            continue
        may_change = purpose == "finetune" and key in ("max_depth", "use_camera_intrinsics", "cam_token_inject_layer")
        if not may_change:
            fix = "leave the flag out to use the checkpoint's value"
            if purpose == "resume":
                fix += ", or start a new run (--pretrained-from) to change it"
            raise SettingsError(
                f"{source} was trained with {_flag(key)} {_show(key, value)}, but {_flag(key)} "
                f"{_show(key, given)} was given; {fix}"
            )
        logger.warning(
            "%s was trained with %s %s; fine-tuning it with %s %s", source, _flag(key), _show(key, value), _flag(key),
            _show(key, given),
        )  # fmt: skip


def resolve_zoom(args: argparse.Namespace) -> None:
    """The random zoom changes the focal length at fixed metric depth: it is only right for a model that sees K.

    Fills `args.zoom_range` ((min, max), or None when off) and refuses an explicit --zoom-range without a camera.
    """
    if not args.use_camera_intrinsics:
        if args.zoom_range is not None:
            raise SettingsError(
                f"--zoom-range {args.zoom_range[0]:g} {args.zoom_range[1]:g} needs --use-camera-intrinsics: a zoom "
                "without K teaches a camera-less model to ignore apparent size; drop --zoom-range"
            )
        logger.info("random zoom off: the model has no camera encoder")
    elif args.no_zoom:
        args.zoom_range = None
    elif args.zoom_range is None:
        args.zoom_range = DEFAULT_ZOOM_RANGE
    if args.zoom_range is not None:
        args.zoom_range = tuple(args.zoom_range)


def check_mixture_matches(ckpt: dict, path: str, args: argparse.Namespace) -> list[str]:
    """Refuse to resume on another training mixture (new or missing label, changed weight, source or setting),
    naming each difference, unless --change-mixture; returns the differences (for the log). Checkpoints written
    before mixtures were stored are not compared; --eval-datasets may change freely."""
    saved = ckpt.get("args", {}).get("mixture")
    changes = [] if saved is None else mixture_differences(saved, args.mixture)
    if changes and not args.change_mixture:
        raise SettingsError(
            f"{path} was trained on another mixture: {'; '.join(changes)}; resume with the same --dataset, or add "
            "--change-mixture to continue on this one"
        )
    return changes


def run_folder_contents(save_path: Path) -> list[Path]:
    """The files and folders of an earlier run in `save_path` (see RUN_FILES, RUN_GLOBS, RUN_FOLDERS)."""
    found = [save_path / name for name in (*RUN_FILES, *RUN_FOLDERS) if (save_path / name).exists()]
    return found + sorted(p for pattern in RUN_GLOBS for p in save_path.glob(pattern))


def check_args(args: argparse.Namespace, info: DistInfo) -> None:
    """Fail at start, with what to do, on combinations that cannot work (model settings already resolved)."""
    errors = []
    if args.use_distillation and not args.teacher_checkpoint:
        errors.append("--use-distillation needs --teacher-checkpoint PATH (a camera-less teacher)")
    elif args.use_distillation:
        try:
            resolve_checkpoint(args.teacher_checkpoint)  # a hub name that cannot be fetched fails now
        except CheckpointError as err:
            errors.append(f"--teacher-checkpoint: {err}")
    if args.cache_teacher and not args.use_distillation:
        errors.append("--cache-teacher caches the teacher of --use-distillation; add --use-distillation")
    depth = BACKBONE_CONFIGS[args.encoder]["depth"]
    if args.use_camera_intrinsics and not 0 <= args.cam_token_inject_layer < depth:
        errors.append(f"--cam-token-inject-layer must be in 0..{depth - 1} for {args.encoder} ({depth} blocks)")
    if args.img_size % PATCH_SIZE:
        nearest = round(args.img_size / PATCH_SIZE) * PATCH_SIZE
        errors.append(f"--img-size {args.img_size} is not a multiple of {PATCH_SIZE} (try {nearest})")
    if args.precision == "fp16" and info.device.type != "cuda":
        errors.append("--precision fp16 needs CUDA (it uses a gradient scaler); use bf16 on CPU")
    if args.eval_only and not args.pretrained_from:
        errors.append("--eval-only needs --pretrained-from CHECKPOINT")
    if args.eval_only and not args.save_path and args.pretrained_from and not Path(args.pretrained_from).exists():
        errors.append("--eval-only of a hub model needs --save-path DIR (for eval.json and train.log)")
    if args.eval_only and args.resume:
        errors.append("--eval-only evaluates --pretrained-from; drop --resume")
    if not args.eval_only and not args.save_path:
        errors.append("--save-path DIR is required for training (the run folder)")
    try:
        parse_kernels(args.kernels)
    except ValueError as err:
        errors.append(str(err))
    if errors:
        raise SystemExit("invalid arguments:\n  " + "\n  ".join(errors))


def check_run_folder(save_path: Path, resuming: bool, overwrite: bool) -> None:
    """A fresh run never writes over another run: stop naming --resume and --overwrite, or clear it for --overwrite."""
    if resuming:
        return
    found = run_folder_contents(save_path)
    if not found:
        return
    if not overwrite:
        names = ", ".join(p.name for p in found[:6]) + (", ..." if len(found) > 6 else "")
        raise SettingsError(
            f"--save-path {save_path} holds another run ({names}); add --resume to continue it, --overwrite to "
            "delete that run and start again, or choose another --save-path"
        )
    found += [p for p in (*(save_path / name for name in RUN_EXTRAS), *save_path.glob(".*.pth.tmp*")) if p.exists()]
    for path in found:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    logger.warning("--overwrite: deleted the earlier run in %s (%s)", save_path, ", ".join(p.name for p in found))


def read_source(args: argparse.Namespace) -> tuple[dict | None, dict | None]:
    """(resume checkpoint, --pretrained-from checkpoint), each read once; then the model flags are resolved
    from them (see `resolve_model_settings`) and the zoom from the camera."""
    resume_ckpt = source = None
    if args.resume:
        path = resume_path(args)
        if path is not None:
            args.resume = str(path)
            resume_ckpt = read_or_stop(path, "--resume")
            resolve_model_settings(args, checkpoint_config(resume_ckpt), str(path), "resume")
    if args.pretrained_from and resume_ckpt is None:
        source = read_or_stop(Path(args.pretrained_from), "--pretrained-from")
        purpose = "eval" if args.eval_only else "finetune"
        resolve_model_settings(args, checkpoint_config(source), args.pretrained_from, purpose)
    if resume_ckpt is None and source is None:
        resolve_model_settings(args, None, "", "finetune")
    resolve_zoom(args)
    return resume_ckpt, source


def resume_path(args: argparse.Namespace) -> Path | None:
    """The checkpoint --resume names: latest.pth of the run folder (bare --resume), PATH, or with 'auto' the run
    folder's latest.pth when it exists (None: a fresh start, logged later)."""
    if args.resume in ("latest", "auto"):
        latest = Path(args.save_path) / "latest.pth"
        if args.resume == "auto" and not latest.exists():
            return None
        return latest
    return Path(args.resume)


def read_or_stop(path: Path, flag: str) -> dict:
    try:
        return read_checkpoint(path)
    except CheckpointError as err:
        raise SystemExit(f"{flag}: {err}") from None


def check_save_path(save_path: Path) -> None:
    """A test write at start, so a full disk or an unwritable folder fails now, not after the first epoch."""
    try:
        save_path.mkdir(parents=True, exist_ok=True)
        probe = save_path / ".write_test"
        with open(probe, "wb") as f:
            f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as err:
        raise SystemExit(
            f"--save-path {save_path} is not writable ({err.strerror}); choose another folder or free space"
        ) from None
