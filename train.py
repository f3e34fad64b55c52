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
import sys
from functools import partial
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from dataset import DataError, GenericDatasetWithIntrinsics, seed_worker
from dataset.check import check_dataset
from dataset.protocol import EVAL_CROPS, EvalProtocol
from dataset.registry import build_dataset
from dataset.units import parse_depth_scale
from depth_anything_v2 import MODEL_CONFIGS, DepthAnythingV2
from depth_anything_v2.configs import PATCH_SIZE
from depth_anything_v2.kernels import parse_kernels
from depth_anything_v2.loading import CheckpointError, load_weights
from util.checkpoint import (
    TrainState,
    check_resume_matches,
    resume,
    save_checkpoint,
    training_checkpoint,
)
from util.dist import DistInfo, barrier, cleanup_distributed, init_distributed, seed_all
from util.distill import build_teacher
from util.engine import NonFiniteLossError, evaluate, evaluate_and_record, train_one_epoch
from util.logger import MetricsWriter, finite_or_null, setup_logging
from util.monitor import CollapseMonitor
from util.optim import build_optimizer
from util.precision import PRECISIONS, choose_kernels, teacher_uses_bf16, tune_allocator
from util.sampler import ResumableSampler
from util.settings import check_args, check_run_folder, check_save_path, read_source
from util.teacher_cache import teacher_cache_dir

logger = logging.getLogger("train")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("Depth Anything V2 + camera intrinsics training", add_help=True)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--encoder", choices=sorted(MODEL_CONFIGS), help="default: the checkpoint's (--resume, ours), else vitl"
    )
    model.add_argument(
        "--max-depth", type=float, help="metric range of the head, metres (default: the checkpoint's, else 20)"
    )
    model.add_argument("--pretrained-from", help="official or our checkpoint: backbone + head (camera encoder new)")
    model.add_argument(
        "--freeze-dinov2",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="freeze the DINOv2 backbone (default); --no-freeze-dinov2 trains it at --lr",
    )
    camera = parser.add_argument_group("camera")
    camera.add_argument(
        "--use-camera-intrinsics",
        action=argparse.BooleanOptionalAction,
        help="add the camera encoder (default: the checkpoint's, else off)",
    )
    camera.add_argument(
        "--cam-token-inject-layer", type=int, help="first backbone block given camera tokens (default 0)"
    )
    camera.add_argument(
        "--zoom-range",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="random zoom factors (log-uniform) for samples with intrinsics; camera models only (default 0.7 2)",
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
    data.add_argument(
        "--depth-scale",
        type=parse_depth_scale,
        default=1.0,
        help="metres per stored depth unit, a number or fraction: 1/256 (KITTI png), 0.001 (millimetres)",
    )
    data.add_argument("--workers", type=int, default=2, help="data loader processes per training process")
    data.add_argument("--skip-bad-samples", action="store_true", help="skip (and log) samples that fail to load")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, default=40)
    optim.add_argument("--bs", "--batch-size", dest="bs", type=int, default=2, help="batch size per process")
    optim.add_argument(
        "--accum-iter", type=int, default=1, help="micro-batches of --bs per optimizer step (gradient accumulation)"
    )
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
    runtime.add_argument(
        "--save-path", help="run folder: checkpoints, logs, TensorBoard (--eval-only: default the checkpoint's folder)"
    )
    runtime.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        help="continue from <save-path>/latest.pth (or PATH); 'auto': resume if latest.pth exists, else start fresh",
    )
    runtime.add_argument(
        "--overwrite", action="store_true", help="delete the run already in --save-path and start a new one"
    )
    runtime.add_argument("--save-every", type=int, default=0, help="also write latest.pth every N iterations")
    runtime.add_argument("--log-interval", type=int, default=10, help="iterations between log lines")
    runtime.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="bf16 autocast: faster steps on CPUs with bf16 instructions and on GPUs (benchmarks/results.md); "
        "fp16: CUDA only",
    )
    runtime.add_argument(
        "--fp32-head-island",
        action="store_true",
        help="under bf16/fp16 keep the head's last convolutions in fp32 in training too (they always are in "
        "evaluation and inference); off by default: measured to train the same, and faster (docs/PERFORMANCE.md)",
    )
    runtime.add_argument(
        "--kernels",
        default="auto",
        help="auto: time the attention implementation and the head layout for this batch shape on the first run on "
        "this machine and cache the fastest (depth_anything_v2/kernels.py); or force some, e.g. attention=sdpa",
    )
    runtime.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    runtime.add_argument("--seed", type=int, default=0)
    runtime.add_argument("--dist-timeout", type=float, default=600.0, help="seconds a rank waits for a dead peer")
    return parser


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


def build_data(args: argparse.Namespace, split: str, mode: str, info: DistInfo) -> GenericDatasetWithIntrinsics:
    """The `split` of --dataset in `mode`; a data problem stops the run with its message."""
    size = (args.img_size, args.img_size)
    options = dict(min_depth=args.min_depth, depth_scale=args.depth_scale, skip_bad_samples=args.skip_bad_samples)
    if mode == "train":
        cache = None
        if args.cache_teacher:
            bf16 = teacher_uses_bf16(args.teacher_precision, args.precision, info.device)
            cache = teacher_cache_dir(
                Path(args.save_path) / "teacher_cache", args.teacher_checkpoint, bf16, args.img_size
            )
        options.update(
            zoom_range=args.zoom_range,
            camera_dropout=args.camera_dropout if args.use_camera_intrinsics else 0.0,
            teacher_cache=cache,
        )
    what = f"{'training' if mode == 'train' else 'validation'} data"
    try:
        dataset = build_dataset(args.dataset, split, size, mode, args.data_root, args.max_depth, **options)
        check_dataset(dataset, what)  # sizes, units and range, before the model and teacher are built
    except DataError as err:
        logger.error("%s: %s", what, err)
        raise SystemExit(f"{what}: {err}") from None
    return dataset


def build_model(args: argparse.Namespace, info: DistInfo, source: dict | None) -> DepthAnythingV2:
    """The student, with the weights of --pretrained-from (`source`, already read; a new camera encoder is
    initialised)."""
    model = DepthAnythingV2(
        args.encoder,
        max_depth=args.max_depth,
        use_camera_intrinsics=args.use_camera_intrinsics,
        cam_token_inject_layer=args.cam_token_inject_layer,
    )
    if args.pretrained_from and source is not None:
        try:
            report = load_weights(model, source)
        except CheckpointError as err:
            raise SystemExit(f"--pretrained-from {args.pretrained_from}: {err}") from None
        newly = report["missing"] or "none"
        logger.info("loaded %s (%d tensors; newly initialised: %s)", args.pretrained_from, report["loaded"], newly)
    model.pretrained.requires_grad_(not args.freeze_dinov2)
    model.pretrained.mask_token.requires_grad_(False)
    model.depth_head.fp32_island_in_training = args.fp32_head_island
    return model.to(info.device)


def start(args: argparse.Namespace) -> tuple[DistInfo, Path, dict | None, dict | None]:
    """Join the process group, resolve and check the flags and the run folder, set up logging and seeds."""
    info = init_distributed(args.device, args.dist_timeout)
    resume_ckpt, source = read_source(args)
    check_args(args, info)
    save_path = Path(args.save_path) if args.save_path else Path(args.pretrained_from).parent
    if info.is_main:
        check_save_path(save_path)
    if info.is_main and not args.eval_only:
        check_run_folder(save_path, resume_ckpt is not None, args.overwrite)
        for stale in save_path.glob(".*.pth.tmp*"):
            stale.unlink()  # left by a process killed inside a checkpoint write
    barrier()
    setup_logging(None if args.eval_only and not args.save_path else save_path, info.is_main)
    seed_all(args.seed + info.rank)
    logger.info(
        "world size %d, device %s, torch %s, per-process batch %d x %d accumulated (effective %d per step), "
        "lr backbone %.2e head %.2e",
        info.world_size, info.device, torch.__version__, args.bs, args.accum_iter,
        args.bs * args.accum_iter * info.world_size, args.lr, args.lr * 10,
    )  # fmt: skip
    if resume_ckpt is not None:
        logger.info("resuming from %s (iteration %d)", args.resume, resume_ckpt["iteration"])
    elif not args.eval_only:
        note = " (--resume auto: no latest.pth yet)" if args.resume == "auto" else ""
        logger.info("starting a new run in %s%s", save_path, note)
    return info, save_path, resume_ckpt, source


def main(args: argparse.Namespace) -> None:
    info, save_path, resume_ckpt, source = start(args)
    val_set = build_data(args, "val", "val", info)
    train_set = None if args.eval_only else build_data(args, "train", "train", info)
    protocol = resolve_protocol(args, val_set)
    if info.is_main and not args.eval_only:
        (save_path / "config.json").write_text(json.dumps(vars(args), indent=2, default=str))
    model = build_model(args, info, source)
    if args.eval_only:
        choice = choose_kernels(model, 1, args.img_size, args.precision, "inference", parse_kernels(args.kernels))
        logger.info("kernels for evaluation: %s", choice.describe())
        results = evaluate(model, val_set, protocol, args, info)
        logger.info("evaluation: %s", " ".join(f"{k} {v:.4f}" for k, v in results.items()))
        if info.is_main:
            (save_path / "eval.json").write_text(json.dumps(finite_or_null(results), indent=2))
            logger.info("wrote %s", save_path / "eval.json")
        cleanup_distributed()
        return

    iters_per_epoch = len(train_set) // (args.bs * args.accum_iter * info.world_size)
    if iters_per_epoch == 0:
        raise SystemExit(
            f"the training split has {len(train_set)} samples, fewer than one batch of "
            f"{args.bs} x {args.accum_iter} micro-batches x {info.world_size} processes: lower --bs or --accum-iter"
        )
    teacher = build_teacher(args, info, train_set, val_set)
    forced = parse_kernels(args.kernels)
    choice = choose_kernels(model, args.bs, args.img_size, args.precision, "training", forced)
    logger.info("student kernels for %d x %d px batches of %d: %s", args.img_size, args.img_size, args.bs,
                choice.describe())  # fmt: skip
    if teacher is not None and train_set.teacher_cache is None:
        teacher_precision = "bf16" if teacher.bf16 else "fp32"
        choice = choose_kernels(teacher.model, args.bs, args.img_size, teacher_precision, "inference", forced)
        logger.info("teacher kernels: %s", choice.describe())
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
    if resume_ckpt is not None:
        check_resume_matches(resume_ckpt, args.resume, args, info.world_size)
        resume(resume_ckpt, model, optimizer, scaler, state)
        logger.info("resumed at epoch %d, iteration %d", state.epoch, state.iteration)

    ddp_model = (
        DistributedDataParallel(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
        if info.distributed
        else model
    )
    writer = MetricsWriter(save_path) if info.is_main else None
    monitor = CollapseMonitor()

    def save(name: str) -> None:
        if info.is_main:
            save_checkpoint(
                training_checkpoint(model, optimizer, scaler, state, args, info.world_size), save_path / name
            )

    def stopped() -> bool:
        return bool(args.max_steps) and state.iteration >= args.max_steps

    try:
        while state.epoch < args.epochs and not stopped():
            if state.epoch_step < iters_per_epoch:
                sampler.set_epoch(state.epoch)
                sampler.set_start(state.epoch_step * args.bs * args.accum_iter)
                save_latest = partial(save, "latest.pth")
                train_one_epoch(
                    ddp_model, teacher, loader, optimizer, scaler, args, state, info, writer, save_latest, monitor
                )
            if state.epoch_step >= iters_per_epoch:  # the epoch is done; a resumed run may still owe its evaluation
                if (state.epoch + 1) % args.eval_interval == 0 and state.evaluated_iteration != state.iteration:
                    evaluate_and_record(model, val_set, protocol, args, info, state, writer, save)
                state.epoch, state.epoch_step = state.epoch + 1, 0
            save("latest.pth")
        if stopped() and state.evaluated_iteration != state.iteration:  # --max-steps: the final weights too
            evaluate_and_record(model, val_set, protocol, args, info, state, writer, save)
            save("latest.pth")
    except NonFiniteLossError as err:
        logger.error("%s", err)
        raise SystemExit(2) from None
    except DataError as err:  # a sample that fails to load, also in a DataLoader worker: its one line
        logger.error("%s", err)
        raise SystemExit(f"data: {err}") from None
    finally:
        if writer:
            writer.close()
        cleanup_distributed()


if __name__ == "__main__":
    tune_allocator()  # before the first large tensor (benchmarks/results.md)
    main(get_args_parser().parse_args(sys.argv[1:]))
