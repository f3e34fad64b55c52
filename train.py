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
Several datasets at once, each with its share of the samples drawn (docs/MIXTURES.md):
    python train.py ... --dataset kitti_rig:1,my_data:2       or       --dataset mix.toml --eval-datasets held_out
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from dataset import DataError, seed_worker
from dataset.mixture_dataset import MixtureDataset
from dataset.protocol import EVAL_CROPS
from dataset.units import parse_depth_scale
from depth_anything_v2 import MODEL_CONFIGS, DepthAnythingV2
from depth_anything_v2.configs import PATCH_SIZE
from depth_anything_v2.geometry import OFFCENTRE_FLAG
from depth_anything_v2.kernels import parse_kernels
from depth_anything_v2.loading import CheckpointError, load_weights
from util.checkpoint import TrainState, resume, save_checkpoint, training_checkpoint
from util.dist import DistInfo, barrier
from util.distill import build_teacher, fill_teacher_cache
from util.engine import NonFiniteLossError, train_one_epoch
from util.logger import MetricsWriter, finite_or_null, log_to_file
from util.mixture_data import MixtureData, build_mixture_data, read_mixture, startup_table, training_options
from util.mixture_eval import evaluate_and_record, evaluate_mixture, log_results
from util.monitor import CollapseMonitor, start_of
from util.optim import build_optimizer
from util.precision import PRECISIONS, choose_kernels, tune_allocator
from util.sampler import ResumableSampler
from util.settings import resolve_recipe
from util.startup import begin_run, start

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
        help="freeze the DINOv2 backbone (default; a resume keeps the checkpoint's); --no-freeze-dinov2 trains it "
        "at --lr (needed without --pretrained-from: a random backbone must not stay frozen)",
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
    data.add_argument(
        "--dataset",
        required=True,
        help="name under dataset/splits/, or a folder with splits/; several as a mixture NAME:WEIGHT,NAME:WEIGHT, "
        "or a .toml file with per-dataset units, ranges and evaluation (docs/MIXTURES.md)",
    )
    data.add_argument("--data-root", help="dataset root for named datasets (hypersim, vkitti2, kitti, nyu)")
    data.add_argument(
        "--eval-datasets", help="datasets evaluated and never trained on (held-out cameras), as --dataset"
    )
    data.add_argument(
        "--steps-per-epoch", type=int, default=0, help="optimizer steps per epoch (0: the training sets' summed size)"
    )
    data.add_argument(
        "--change-mixture", action="store_true", help="--resume on another --dataset mixture (the change is logged)"
    )
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
    data.add_argument(
        OFFCENTRE_FLAG,
        action="store_true",
        help="accept K whose principal point lies far from the image centre (crops; docs/DATA_CHECKS.md)",
    )
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, help="default 40; a resume keeps the checkpoint's (docs/RUNS.md)")
    optim.add_argument("--bs", "--batch-size", dest="bs", type=int, default=2, help="batch size per process")
    optim.add_argument(
        "--accum-iter", type=int, default=1, help="micro-batches of --bs per optimizer step (gradient accumulation)"
    )
    optim.add_argument("--lr", type=float, default=5e-6, help="backbone lr; head and camera encoder get 10x")
    optim.add_argument("--weight-decay", type=float, default=0.01)
    optim.add_argument(
        "--warmup-iters",
        type=int,
        help="linear warm-up steps (default: from random weights 10%% of the schedule, at most 100; else 0)",
    )
    optim.add_argument(
        "--clip-grad",
        type=float,
        help="max gradient norm, 0: no clipping (default: 1.0 from random weights, else 0)",
    )
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
        "--teacher-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="judge the teacher on 4 validation images and refuse a flat, saturated or uncorrelated one (default); "
        "--no-teacher-check distils from it anyway, with a warning",
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
        default="auto",
        choices=("auto", *PRECISIONS),
        help="auto (default): bf16 autocast where the device runs bf16 natively (CUDA, AVX512-BF16 or AMX CPUs), "
        "else fp32; bf16 is slower than fp32 where it is emulated; fp16: CUDA only",
    )
    runtime.add_argument(
        "--fp32-head-island",
        action="store_true",
        help="under bf16/fp16 keep the head's last convolutions in fp32 in training too (they always are in "
        "evaluation and inference); off by default: faster, and trains within seed noise of it (docs/PERFORMANCE.md)",
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


def evaluate_only(
    model: DepthAnythingV2, data: MixtureData, args: argparse.Namespace, info: DistInfo, save_path: Path
) -> None:
    """--eval-only: every dataset of the mixture and of --eval-datasets, into eval.json (flat keys, as the
    metrics.jsonl tags without `eval/`)."""
    choice = choose_kernels(model, 1, args.img_size, args.precision, "inference", parse_kernels(args.kernels))
    logger.info("kernels for evaluation: %s", choice.describe())
    results = evaluate_mixture(model, data, args, info)
    log_results("evaluation", results, data)
    if info.is_main:
        (save_path / "eval.json").write_text(json.dumps(finite_or_null(results), indent=2))
        logger.info("wrote %s", save_path / "eval.json")


def main(args: argparse.Namespace) -> None:
    """Train (or evaluate) as the flags say. A refusal is a SystemExit with one message (also written to train.log
    when the run had begun); the lock and the process group are released however main ends."""
    with ExitStack() as stack:
        try:
            train(args, stack)
        except SystemExit as stop:
            if isinstance(stop.code, str):
                log_to_file(stop.code)
            raise


def train(args: argparse.Namespace, stack: ExitStack) -> None:
    specs, held_out = read_mixture(args)  # a bad spec stops here, before any work
    started = start(args, stack)
    if started is None:
        return
    info, save_path, sources, overwritten = started
    data = build_mixture_data(args, specs, held_out, None if args.eval_only else training_options(args))
    step_draws = args.bs * args.accum_iter * info.world_size
    train_size = sum(len(d) for d in data.train.values())
    iters_per_epoch = args.steps_per_epoch or train_size // step_draws
    logger.info("datasets:\n%s", startup_table(data, args, step_draws, iters_per_epoch))
    if args.eval_only:
        try:
            evaluate_only(build_model(args, info, sources.pretrained), data, args, info, save_path)
        except DataError as err:
            raise SystemExit(str(err)) from None
        return
    if iters_per_epoch <= 0:
        raise SystemExit(
            f"the training data has {train_size} samples, fewer than one step of {args.bs} x {args.accum_iter} "
            f"micro-batches x {info.world_size} processes: lower --bs or --accum-iter, or set --steps-per-epoch N > 0"
        )
    logger.info("%s", resolve_recipe(args, args.epochs * iters_per_epoch))
    train_set = MixtureDataset(data.train)
    teacher = build_teacher(args, info, data.val[specs[0].label])
    if info.is_main:
        begin_run(args, save_path, overwritten, sources.damaged)
    barrier()
    if teacher is not None and train_set.teacher_cache is not None:
        fill_teacher_cache(teacher, train_set, args, info)
    model = build_model(args, info, sources.pretrained)
    forced = parse_kernels(args.kernels)
    choice = choose_kernels(model, args.bs, args.img_size, args.precision, "training", forced)
    logger.info("student kernels for %d x %d px batches of %d: %s", args.img_size, args.img_size, args.bs,
                choice.describe())  # fmt: skip
    if teacher is not None and train_set.teacher_cache is None:
        choice = choose_kernels(teacher.model, args.bs, args.img_size, args.teacher_precision, "inference", forced)
        logger.info("teacher kernels: %s", choice.describe())
    sampler = ResumableSampler(
        [len(d) for d in data.train.values()], [s.weight for s in specs], data.train_labels,
        per_rank=args.bs * args.accum_iter, world_size=info.world_size, rank=info.rank, seed=args.seed,
        steps_per_epoch=iters_per_epoch,
    )  # fmt: skip
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
    if sources.resume is not None:
        resume(sources.resume, model, optimizer, scaler, state)
        if sources.resume.get("sampler") is not None and not sampler.load_state_dict(sources.resume["sampler"]):
            logger.warning("the mixture changed: each dataset's stream continues, the rest of the epoch is drawn anew")
        logger.info("resumed at epoch %d, iteration %d; samples drawn so far: %s", state.epoch, state.iteration,
                    sampler.drawn(state.epoch_step))  # fmt: skip

    ddp_model = (
        DistributedDataParallel(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
        if info.distributed
        else model
    )
    writer = MetricsWriter(save_path) if info.is_main else None
    if writer:
        stack.callback(writer.close)
    teacher_name = args.teacher_checkpoint if teacher else None
    monitor = CollapseMonitor(start=start_of(args.pretrained_from), teacher=teacher_name,
                              warmup_iters=args.warmup_iters, clip_grad=args.clip_grad)  # fmt: skip

    def save(name: str) -> None:
        if info.is_main:
            sampler_state = sampler.state_dict(state.epoch_step)
            checkpoint = training_checkpoint(model, optimizer, scaler, state, args, info.world_size, sampler_state)
            save_checkpoint(checkpoint, save_path / name, keep_previous=name == "latest.pth")

    def stopped() -> bool:
        return bool(args.max_steps) and state.iteration >= args.max_steps

    try:
        while state.epoch < args.epochs and not stopped():
            sampler.set_epoch(state.epoch)
            if state.epoch_step < iters_per_epoch:
                sampler.set_start(state.epoch_step)
                save_latest = partial(save, "latest.pth")
                train_one_epoch(
                    ddp_model, teacher, loader, optimizer, scaler, args, state, info, writer, save_latest, monitor
                )
            if state.epoch_step >= iters_per_epoch:  # the epoch is done; a resumed run may still owe its evaluation
                if (state.epoch + 1) % args.eval_interval == 0 and state.evaluated_iteration != state.iteration:
                    evaluate_and_record(model, data, args, info, state, writer, save)
                state.epoch, state.epoch_step = state.epoch + 1, 0
                sampler.set_epoch(state.epoch)  # its state in latest.pth is the new epoch's start
            save("latest.pth")
        if stopped() and state.evaluated_iteration != state.iteration:  # --max-steps: the final weights too
            evaluate_and_record(model, data, args, info, state, writer, save)
            save("latest.pth")
    except NonFiniteLossError as err:
        logger.error("%s", err)
        raise SystemExit(2) from None
    except DataError as err:  # a sample that fails to load, also in a DataLoader worker: its one line
        raise SystemExit(f"data: {err}") from None


if __name__ == "__main__":
    tune_allocator()  # before the first large tensor (benchmarks/results.md)
    main(get_args_parser().parse_args(sys.argv[1:]))
