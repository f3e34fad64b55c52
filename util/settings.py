"""The settings a run resolves before any work: flag checks, the model's settings from our checkpoints or the flags,
the zoom, the checkpoints to start from and the from-scratch recipe.

A run is never silently wrong: a flag that conflicts with what a checkpoint says stops the run naming the file,
both values and the flag that resolves it, and every default filled in here is written back to `args`, so that
config.json and the checkpoint's `args` hold what actually ran.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

from dataset.mixture import mixture_differences
from depth_anything_v2.configs import BACKBONE_CONFIGS, PATCH_SIZE
from depth_anything_v2.hub import resolve_checkpoint
from depth_anything_v2.kernels import parse_kernels
from depth_anything_v2.loading import CheckpointError, checkpoint_config, read_checkpoint

from .checkpoint import PREVIOUS_NAME, resolve_resume_settings
from .dist import DistInfo

logger = logging.getLogger(__name__)

# The student's model settings: argparse leaves them None when not given, so a checkpoint can fill them in.
MODEL_DEFAULTS = {"encoder": "vitl", "max_depth": 20.0, "use_camera_intrinsics": False, "cam_token_inject_layer": 0}
DEFAULT_ZOOM_RANGE = (0.7, 2.0)
DEFAULT_EPOCHS = 40  # of a new run; a resumed run keeps its checkpoint's
# From random weights (no --pretrained-from), --warmup-iters and --clip-grad left out become a warm-up of 10 % of
# the schedule (at most 100 steps) and clipping at norm 1: the recipe of the evidence experiment's working pilot
# (100 of 1,200 steps, clip 1.0; experiments/focal_jobs.py). With pretrained weights they stay 0 (off).
SCRATCH_WARMUP_FRACTION, SCRATCH_WARMUP_MAX, SCRATCH_CLIP_GRAD = 0.1, 100, 1.0


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


def check_flags(args: argparse.Namespace, info: DistInfo) -> None:
    """Fail at start, with what to do, on flag combinations that cannot work, before any file is read."""
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
    if args.img_size % PATCH_SIZE:
        nearest = round(args.img_size / PATCH_SIZE) * PATCH_SIZE
        errors.append(f"--img-size {args.img_size} is not a multiple of {PATCH_SIZE} (try {nearest})")
    if args.precision == "fp16" and info.device.type != "cuda":
        errors.append("--precision fp16 needs CUDA (it uses a gradient scaler); use bf16 or auto on CPU")
    if args.eval_only and not args.pretrained_from:
        errors.append("--eval-only needs --pretrained-from CHECKPOINT")
    if args.eval_only and not args.save_path and args.pretrained_from and not Path(args.pretrained_from).exists():
        errors.append("--eval-only of a hub model needs --save-path DIR (for eval.json and train.log)")
    if args.eval_only and args.resume:
        errors.append("--eval-only evaluates --pretrained-from; drop --resume")
    if not args.eval_only and not args.save_path:
        what = "the run folder whose latest.pth --resume reads" if args.resume else "the run folder"
        errors.append(f"--save-path DIR is required for training ({what})")
    if args.epochs is not None and args.epochs < 1:
        errors.append(f"--epochs {args.epochs}: give at least 1")
    if random_frozen_backbone(args):
        errors.append(
            "without --pretrained-from the DINOv2 backbone starts from random weights, and --freeze-dinov2 (the "
            "default) would keep them random: the head would learn from random features. Fine-tune a trained "
            "model with --pretrained-from CHECKPOINT (official or ours), or train from scratch with "
            "--no-freeze-dinov2 (then a warm-up and --clip-grad 1.0 are the defaults; e.g. --lr 1e-4; docs/RUNS.md)"
        )
    try:
        parse_kernels(args.kernels)
    except ValueError as err:
        errors.append(str(err))
    if errors:
        raise SystemExit("invalid arguments:\n  " + "\n  ".join(errors))


def random_frozen_backbone(args: argparse.Namespace) -> bool:
    """A new run (nothing to resume) without --pretrained-from whose backbone stays frozen (flag or default)."""
    if args.eval_only or args.pretrained_from or args.freeze_dinov2 is False:
        return False
    if args.resume and args.save_path:
        return args.resume == "auto" and resume_path(args) is None
    return not args.resume


def check_model_args(args: argparse.Namespace) -> None:
    """Fail at start on flags that conflict with the model settings resolved from a checkpoint."""
    depth = BACKBONE_CONFIGS[args.encoder]["depth"]
    if args.use_camera_intrinsics and not 0 <= args.cam_token_inject_layer < depth:
        raise SystemExit(
            f"invalid arguments:\n  --cam-token-inject-layer must be in 0..{depth - 1} for {args.encoder} "
            f"({depth} blocks)"
        )


def resolve_recipe(args: argparse.Namespace, total_iters: int) -> str:
    """Fill --warmup-iters and --clip-grad left out (None): the from-scratch recipe without --pretrained-from
    (see SCRATCH_WARMUP_FRACTION), else 0 (off). An explicit value always wins. Returns the line to log."""
    scratch = not args.pretrained_from
    chosen = []
    if args.warmup_iters is None:
        args.warmup_iters = (
            min(SCRATCH_WARMUP_MAX, max(1, round(SCRATCH_WARMUP_FRACTION * total_iters))) if scratch else 0
        )
        chosen.append(f"--warmup-iters {args.warmup_iters}")
    if args.clip_grad is None:
        args.clip_grad = SCRATCH_CLIP_GRAD if scratch else 0.0
        chosen.append(f"--clip-grad {args.clip_grad:g}")
    if not chosen:
        return f"--warmup-iters {args.warmup_iters}, --clip-grad {args.clip_grad:g} (given, or the checkpoint's)"
    why = (
        "from random weights (no --pretrained-from): the from-scratch recipe, a warm-up of 10 % of the "
        f"{total_iters} steps (at most {SCRATCH_WARMUP_MAX}) and clipping at 1, as a higher lr diverges without them"
        if scratch
        else "from pretrained weights: no warm-up, no clipping"
    )
    return f"{' and '.join(chosen)}: {why} (give the flag to override)"


@dataclass
class Sources:
    """The checkpoints a run starts from, each read once.

    Attributes:
        resume: the training checkpoint of --resume, or None.
        pretrained: the checkpoint of --pretrained-from (not read when resuming), or None.
        damaged: a latest.pth that failed to load when `resume` came from the previous.pth beside it.
    """

    resume: dict | None = None
    pretrained: dict | None = None
    damaged: Path | None = None


def read_source(args: argparse.Namespace) -> Sources:
    """Read the checkpoints of --resume and --pretrained-from; then resolve the model flags from them (see
    `resolve_model_settings`), the zoom from the camera, and a resume's schedule (`resolve_resume_settings`)."""
    sources = Sources()
    if args.resume:
        path = resume_path(args)
        if path is not None:
            sources.resume, used, sources.damaged = read_resume(path)
            args.resume = str(used)
            resolve_model_settings(args, checkpoint_config(sources.resume), str(used), "resume")
            resolve_resume_settings(args, sources.resume, str(used))
    if args.pretrained_from and sources.resume is None:
        sources.pretrained = read_or_stop(Path(args.pretrained_from), "--pretrained-from")
        purpose = "eval" if args.eval_only else "finetune"
        resolve_model_settings(args, checkpoint_config(sources.pretrained), args.pretrained_from, purpose)
    if sources.resume is None and sources.pretrained is None:
        resolve_model_settings(args, None, "", "finetune")
    args.epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs
    args.freeze_dinov2 = True if args.freeze_dinov2 is None else args.freeze_dinov2
    resolve_zoom(args)
    return sources


def resume_path(args: argparse.Namespace) -> Path | None:
    """The checkpoint --resume names: latest.pth of the run folder (bare --resume), PATH, or with 'auto' the run
    folder's latest.pth when it (or the previous.pth kept beside it) exists (None: a fresh start, logged later)."""
    if args.resume in ("latest", "auto"):
        latest = Path(args.save_path) / "latest.pth"
        if args.resume == "auto" and not (latest.exists() or latest.with_name(PREVIOUS_NAME).exists()):
            return None
        return latest
    return Path(args.resume)


def read_resume(path: Path) -> tuple[dict, Path, Path | None]:
    """(checkpoint, the file it came from, the damaged file it replaces or None): a latest.pth that is missing
    or fails to load (damaged, truncated) falls back to the previous.pth saved before it, with a warning."""
    previous = path.with_name(PREVIOUS_NAME)
    try:
        return read_checkpoint(path), path, None
    except CheckpointError as err:
        if path.name != "latest.pth" or not previous.is_file():
            raise SystemExit(f"--resume: {err}") from None
        try:
            ckpt = read_checkpoint(previous)
        except CheckpointError as second:
            raise SystemExit(f"--resume: {err}; the fallback {second}") from None
        logger.warning(
            "--resume: %s; resuming from %s instead, the checkpoint saved before it (iteration %d)",
            err, previous, ckpt["iteration"],
        )  # fmt: skip
        return ckpt, previous, path if path.exists() else None


def read_or_stop(path: Path, flag: str) -> dict:
    try:
        return read_checkpoint(path)
    except CheckpointError as err:
        raise SystemExit(f"{flag}: {err}") from None
