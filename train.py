"""Train a (camera-aware) Depth Anything V2 student, optionally distilled from a frozen teacher.

One process:
    python train.py --encoder vitl --dataset my_data --img-size 518 --max-depth 20.0 --epochs 40 --bs 4 \
        --lr 0.000005 --pretrained-from checkpoints/depth_anything_v2_metric_hypersim_vitl.pth \
        --teacher-checkpoint checkpoints/depth_anything_v2_metric_hypersim_vitl.pth \
        --save-path ./checkpoints/training_run --use-camera-intrinsics --use-distillation \
        --cam-token-inject-layer 0 --freeze-dinov2
Several processes (DDP, NCCL on CUDA, gloo on CPU), the same flags:
    torchrun --nproc_per_node=4 train.py ...
Continue after a crash:
    python train.py ... --resume        (reads <save-path>/latest.pth)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from dataset import DataError, GenericDatasetWithIntrinsics, seed_worker
from dataset.protocol import EVAL_CROPS, EvalProtocol
from dataset.registry import build_dataset
from depth_anything_v2 import MODEL_CONFIGS, DepthAnythingV2
from depth_anything_v2.configs import BACKBONE_CONFIGS, PATCH_SIZE
from depth_anything_v2.loading import CheckpointError, load_weights
from util.checkpoint import TrainState, resume, save_checkpoint, training_checkpoint, update_best
from util.dist import DistInfo, barrier, cleanup_distributed, init_distributed, seed_all
from util.distill import FrozenTeacher, cache_teacher_predictions
from util.engine import NonFiniteLossError, evaluate, train_one_epoch
from util.logger import MetricsWriter, setup_logging
from util.optim import build_optimizer
from util.precision import PRECISIONS, has_fast_bf16, tune_allocator
from util.sampler import ResumableSampler

logger = logging.getLogger("train")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("Depth Anything V2 + camera intrinsics training", add_help=True)
    model = parser.add_argument_group("model")
    model.add_argument("--encoder", default="vitl", choices=sorted(MODEL_CONFIGS))
    model.add_argument("--max-depth", type=float, default=20.0, help="metric range of the head, metres")
    model.add_argument("--pretrained-from", help="official or our checkpoint: backbone + head (camera encoder new)")
    model.add_argument(
        "--freeze-dinov2",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="freeze the DINOv2 backbone (default); --no-freeze-dinov2 trains it at --lr",
    )
    camera = parser.add_argument_group("camera")
    camera.add_argument("--use-camera-intrinsics", action="store_true", help="add the camera encoder")
    camera.add_argument(
        "--cam-token-inject-layer", type=int, default=0, help="first backbone block given camera tokens"
    )
    camera.add_argument(
        "--zoom-range",
        type=float,
        nargs=2,
        default=(0.7, 2.0),
        metavar=("MIN", "MAX"),
        help="random zoom factors (log-uniform) for samples with intrinsics",
    )
    camera.add_argument("--no-zoom", action="store_true", help="disable the random zoom augmentation")
    camera.add_argument("--camera-dropout", type=float, default=0.2, help="probability of hiding K (null camera)")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", required=True, help="name under dataset/splits/, or a folder with splits/")
    data.add_argument("--data-root", help="dataset root for named datasets (hypersim, vkitti2, kitti, nyu)")
    data.add_argument(
        "--img-size",
        type=int,
        default=518,
        help=f"training crop side and evaluation short side, pixels (multiple of {PATCH_SIZE})",
    )
    data.add_argument("--min-depth", type=float, default=0.001, help="ground truth below this (m) is ignored")
    data.add_argument("--depth-scale", type=float, default=1.0, help="metres per unit of 16-bit png depth")
    data.add_argument("--workers", type=int, default=2, help="data loader processes per training process")
    data.add_argument("--skip-bad-samples", action="store_true", help="skip (and log) samples that fail to load")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, default=40)
    optim.add_argument("--bs", "--batch-size", dest="bs", type=int, default=2, help="batch size per process")
    optim.add_argument("--lr", type=float, default=5e-6, help="backbone lr; head and camera encoder get 10x")
    optim.add_argument("--weight-decay", type=float, default=0.01)
    optim.add_argument("--warmup-iters", type=int, default=0)
    optim.add_argument("--clip-grad", type=float, default=0.0, help="max gradient norm (0: no clipping)")
    optim.add_argument("--max-steps", type=int, default=0, help="stop after this many iterations (0: all epochs)")
    optim.add_argument(
        "--max-skipped-steps", type=int, default=20, help="stop after this many non-finite steps in a row"
    )
    distill = parser.add_argument_group("distillation")
    distill.add_argument("--use-distillation", action="store_true")
    distill.add_argument("--teacher-checkpoint", help="frozen camera-less teacher (official or ours)")
    distill.add_argument("--teacher-encoder", help="teacher encoder for official checkpoints (default: inferred)")
    distill.add_argument("--distill-weight", type=float, default=1.0)
    distill.add_argument(
        "--teacher-precision",
        default="auto",
        choices=("auto", "bf16", "fp32"),
        help="auto: bf16 with --precision bf16/fp16 or where the device runs bf16 natively, else fp32",
    )
    distill.add_argument(
        "--cache-teacher",
        action="store_true",
        help="run the teacher once per image into <save-path>/teacher_cache and warp its predictions "
        "with each augmentation instead of running it every step",
    )
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--eval-interval", type=int, default=1, help="evaluate every N epochs")
    evaluation.add_argument(
        "--eval-crop",
        choices=EVAL_CROPS,
        help="evaluation crop (default: the dataset's protocol, else none)",
    )
    evaluation.add_argument("--eval-min-depth", type=float, help="default: the dataset's protocol, else --min-depth")
    evaluation.add_argument("--eval-max-depth", type=float, help="default: the dataset's protocol, else --max-depth")
    evaluation.add_argument("--zoom-factor", type=float, default=2.0, help="centre zoom for eval/zoom_slope (1: off)")
    evaluation.add_argument("--eval-only", action="store_true", help="evaluate --pretrained-from and exit")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--save-path", required=True, help="run folder: checkpoints, logs, TensorBoard")
    runtime.add_argument("--resume", nargs="?", const="auto", help="continue from <save-path>/latest.pth (or PATH)")
    runtime.add_argument("--save-every", type=int, default=0, help="also write latest.pth every N iterations")
    runtime.add_argument("--log-interval", type=int, default=10, help="iterations between log lines")
    runtime.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="bf16 autocast: faster steps on CPUs with bf16 instructions and on GPUs (benchmarks/results.md); "
        "fp16: CUDA only",
    )
    runtime.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    runtime.add_argument("--seed", type=int, default=0)
    runtime.add_argument("--dist-timeout", type=float, default=600.0, help="seconds a rank waits for a dead peer")
    return parser


def check_args(args: argparse.Namespace, info: DistInfo) -> None:
    """Fail at start, with what to do, on combinations that cannot work."""
    errors = []
    if args.use_distillation and not args.teacher_checkpoint:
        errors.append("--use-distillation needs --teacher-checkpoint PATH (a camera-less teacher)")
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
    if errors:
        raise SystemExit("invalid arguments:\n  " + "\n  ".join(errors))


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
        )


def teacher_uses_bf16(teacher_precision: str, precision: str, device: torch.device) -> bool:
    """Whether the frozen teacher runs under bf16 autocast (its depth stays within 0.5 % median of fp32,
    tests/test_precision.py): when asked, or with auto where the student runs in half precision or the device
    runs bf16 natively."""
    if teacher_precision != "auto":
        return teacher_precision == "bf16"
    return precision != "fp32" or has_fast_bf16(device)


def resolve_protocol(args: argparse.Namespace, val_set: GenericDatasetWithIntrinsics) -> EvalProtocol:
    """The evaluation protocol: each --eval-* flag given, else the dataset's declared protocol, else the training
    range without a crop. The resolved values are written back to `args` (config.json records what ran)."""
    declared = val_set.eval_protocol or EvalProtocol("none", args.min_depth, args.max_depth)
    protocol = EvalProtocol(
        args.eval_crop or declared.crop,
        declared.min_depth if args.eval_min_depth is None else args.eval_min_depth,
        declared.max_depth if args.eval_max_depth is None else args.eval_max_depth,
    )
    args.eval_crop, args.eval_min_depth, args.eval_max_depth = protocol.crop, protocol.min_depth, protocol.max_depth
    return protocol


def build_data(args: argparse.Namespace, split: str, mode: str) -> GenericDatasetWithIntrinsics:
    """The `split` of --dataset in `mode`; a data problem stops the run with its message."""
    size = (args.img_size, args.img_size)
    options = dict(min_depth=args.min_depth, depth_scale=args.depth_scale, skip_bad_samples=args.skip_bad_samples)
    if mode == "train":
        options.update(
            zoom_range=None if args.no_zoom else tuple(args.zoom_range),
            camera_dropout=args.camera_dropout if args.use_camera_intrinsics else 0.0,
            teacher_cache=Path(args.save_path) / "teacher_cache" if args.cache_teacher else None,
        )
    try:
        return build_dataset(args.dataset, split, size, mode, args.data_root, args.max_depth, **options)
    except DataError as err:
        raise SystemExit(f"{'training' if mode == 'train' else 'validation'} data: {err}") from None


def build_model(args: argparse.Namespace, info: DistInfo) -> DepthAnythingV2:
    """The student: official or our weights from --pretrained-from (a new camera encoder is initialised)."""
    model = DepthAnythingV2(
        args.encoder,
        max_depth=args.max_depth,
        use_camera_intrinsics=args.use_camera_intrinsics,
        cam_token_inject_layer=args.cam_token_inject_layer,
    )
    if args.pretrained_from:
        try:
            report = load_weights(model, args.pretrained_from)
        except CheckpointError as err:
            raise SystemExit(f"--pretrained-from: {err}") from None
        newly = report["missing"] or "none"
        logger.info("loaded %s (%d tensors; newly initialised: %s)", args.pretrained_from, report["loaded"], newly)
    model.pretrained.requires_grad_(not args.freeze_dinov2)
    model.pretrained.mask_token.requires_grad_(False)
    return model.to(info.device)


def build_teacher(
    args: argparse.Namespace, info: DistInfo, train_set: GenericDatasetWithIntrinsics
) -> FrozenTeacher | None:
    """The frozen teacher of --use-distillation; with --cache-teacher its predictions are written first."""
    if not args.use_distillation:
        return None
    try:
        teacher = FrozenTeacher(
            args.teacher_checkpoint,
            info.device,
            encoder=args.teacher_encoder,
            max_depth=args.max_depth,
            bf16=teacher_uses_bf16(args.teacher_precision, args.precision, info.device),
        )
    except CheckpointError as err:
        raise SystemExit(f"--teacher-checkpoint: {err}") from None
    if train_set.teacher_cache is not None:
        computed = cache_teacher_predictions(
            teacher, train_set, train_set.teacher_cache, args.img_size, info.rank, info.world_size
        )
        barrier()
        logger.info("teacher predictions cached in %s (%d computed by this process)", train_set.teacher_cache, computed)
    return teacher


def start(args: argparse.Namespace) -> tuple[DistInfo, Path]:
    """Join the process group, check the flags and the run folder, set up logging and seeds."""
    info = init_distributed(args.device, args.dist_timeout)
    save_path = Path(args.save_path)
    check_args(args, info)
    if info.is_main:
        check_save_path(save_path)
        for stale in save_path.glob(".*.pth.tmp*"):
            stale.unlink()  # left by a process killed inside a checkpoint write
    barrier()
    setup_logging(save_path, info.is_main)
    seed_all(args.seed + info.rank)
    logger.info(
        "world size %d, device %s, torch %s, per-process batch %d (effective %d), lr backbone %.2e head %.2e",
        info.world_size,
        info.device,
        torch.__version__,
        args.bs,
        args.bs * info.world_size,
        args.lr,
        args.lr * 10,
    )
    return info, save_path


def main(args: argparse.Namespace) -> None:
    info, save_path = start(args)
    val_set = build_data(args, "val", "val")
    protocol = resolve_protocol(args, val_set)
    if info.is_main:
        (save_path / "config.json").write_text(json.dumps(vars(args), indent=2, default=str))
    model = build_model(args, info)
    if args.eval_only:
        results = evaluate(model, val_set, protocol, args, info)
        logger.info("evaluation: %s", " ".join(f"{k} {v:.4f}" for k, v in results.items()))
        if info.is_main:
            (save_path / "eval.json").write_text(json.dumps(results, indent=2))
        cleanup_distributed()
        return

    train_set = build_data(args, "train", "train")
    iters_per_epoch = len(train_set) // (args.bs * info.world_size)
    if iters_per_epoch == 0:
        raise SystemExit(
            f"the training split has {len(train_set)} samples, fewer than one batch of "
            f"{args.bs} x {info.world_size} processes: lower --bs"
        )
    teacher = build_teacher(args, info, train_set)
    sampler = ResumableSampler(train_set, info.world_size, info.rank, seed=args.seed)
    loader = DataLoader(
        train_set,
        batch_size=args.bs,
        sampler=sampler,
        num_workers=args.workers,
        drop_last=True,
        pin_memory=info.device.type == "cuda",
        persistent_workers=False,
        worker_init_fn=seed_worker,
    )
    optimizer = build_optimizer(model, args)
    scaler = torch.amp.GradScaler("cuda") if args.precision == "fp16" else None
    state = TrainState(total_iters=args.epochs * iters_per_epoch)
    if args.resume:
        resume_path = save_path / "latest.pth" if args.resume == "auto" else Path(args.resume)
        try:
            resume(resume_path, model, optimizer, scaler, state)
        except CheckpointError as err:
            raise SystemExit(f"--resume: {err}") from None
        if state.epoch_step >= iters_per_epoch:
            state.epoch, state.epoch_step = state.epoch + 1, 0
        logger.info("resumed from %s at epoch %d, iteration %d", resume_path, state.epoch, state.iteration)

    ddp_model = (
        DistributedDataParallel(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
        if info.distributed
        else model
    )
    writer = MetricsWriter(save_path) if info.is_main else None

    def save(name: str) -> None:
        if info.is_main:
            save_checkpoint(training_checkpoint(model, optimizer, scaler, state, args), save_path / name)

    try:
        while state.epoch < args.epochs and not (args.max_steps and state.iteration >= args.max_steps):
            sampler.set_epoch(state.epoch)
            sampler.set_start(state.epoch_step * args.bs)
            train_one_epoch(
                ddp_model, teacher, loader, optimizer, scaler, args, state, info, writer, lambda: save("latest.pth")
            )
            epoch_done = state.epoch_step >= iters_per_epoch
            if epoch_done and (state.epoch + 1) % args.eval_interval == 0:
                results = evaluate(model, val_set, protocol, args, info)
                logger.info("epoch %d eval: %s", state.epoch, " ".join(f"{k} {v:.4f}" for k, v in results.items()))
                if writer:
                    writer.write(state.iteration, {f"eval/{k}": v for k, v in results.items()}, epoch=state.epoch)
                if update_best(state.previous_best, results):
                    save("best.pth")
            if epoch_done:
                state.epoch, state.epoch_step = state.epoch + 1, 0
            save("latest.pth")
    except NonFiniteLossError as err:
        logger.error("%s", err)
        raise SystemExit(2) from None
    finally:
        if writer:
            writer.close()
        cleanup_distributed()


if __name__ == "__main__":
    tune_allocator()  # before the first large tensor (benchmarks/results.md)
    main(get_args_parser().parse_args(sys.argv[1:]))
