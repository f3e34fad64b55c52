"""The flags run.py and run_video.py share (model, camera, runtime) and the runner they set up.

Without --load-from the official scripts' checkpoint is used, checkpoints/depth_anything_v2_<encoder>.pth
(encoder vitl by default), so that the official commands work as they are.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

import torch

from dataset.io import DataError
from depth_anything_v2 import MODEL_CONFIGS, PATCH_SIZE
from depth_anything_v2.configs import OFFICIAL_SIZES
from depth_anything_v2.geometry import OFFCENTRE_FLAG
from depth_anything_v2.kernels import parse_kernels
from depth_anything_v2.loading import CheckpointError, build_model_from_checkpoint
from depth_anything_v2.pretrained import checkpoint_weights_file
from inference.backends import (
    BACKENDS,
    CheckpointGraphs,
    ModelInfo,
    OnnxRunner,
    Runner,
    TorchRunner,
    describe_onnx,
    resolve_precision,
)
from inference.inputs import CameraSource, check_writable_folder
from inference.onnx_export import cache_folder
from inference.video import VideoOptions
from util.dist import resolve_device
from util.precision import PRECISIONS, compile_frozen

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
_NEGATIVE_NUMBERS = re.compile(r"-[\d.]")  # how fx,fy,cx,cy with a negative first number starts


class InferenceParser(argparse.ArgumentParser):
    """An ArgumentParser that takes `--intrinsics -500,500,320,240` as a flag and its value.

    argparse reads a word that starts with '-' and is not a plain number as the next flag, so it would stop with
    "expected one argument"; such a value (a '-' then a digit or '.') is joined to its flag, `--intrinsics=-500,...`,
    and then refused or accepted by the checks of the value itself.
    """

    def parse_known_args(
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        joined = []
        while words:
            word = words.pop(0)
            if word == "--intrinsics" and words and _NEGATIVE_NUMBERS.match(words[0]):
                word = f"{word}={words.pop(0)}"
            joined.append(word)
        return super().parse_known_args(joined, namespace)


def add_model_arguments(parser: argparse.ArgumentParser, export: bool = False) -> None:
    """--load-from, --encoder, --max-depth, and --input-size unless for `export` (export.py has its own)."""
    model = parser.add_argument_group("model")
    graph = "" if export else ", or an .onnx of export.py (with an ONNX --backend)"
    model.add_argument(
        "--load-from",
        help=f"official .pth, one of our checkpoints, a saved model folder, a Hugging Face hub name (e.g. "
        f"depth-anything/Depth-Anything-V2-Small-hf, docs/HUB.md){graph}; default: "
        "checkpoints/depth_anything_v2_<encoder>.pth, as the official scripts",
    )
    model.add_argument(
        "--encoder",
        choices=sorted(MODEL_CONFIGS),
        help="the checkpoint's encoder (default: read from the weights; without --load-from: vitl)",
    )
    model.add_argument("--max-depth", type=float, help="metric range (m) of an official metric checkpoint")
    if not export:
        model.add_argument("--input-size", type=int, default=518, help=f"network short side, multiple of {PATCH_SIZE}")


def inference_parser(
    description: str, input_flag: str, input_help: str, outdir: str
) -> tuple[argparse.ArgumentParser, argparse._ArgumentGroup]:
    """The parser of run.py and run_video.py: groups model, input and output (`input_flag`, --outdir and the
    output flags), camera, runtime. Returns the parser and its input-and-output group, for a script's own flags."""
    parser = InferenceParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    data = parser.add_argument_group("input and output")
    data.add_argument(input_flag, required=True, help=input_help)
    data.add_argument("--outdir", default=outdir)
    add_output_arguments(data)
    add_camera_arguments(parser)
    add_runtime_arguments(parser)
    return parser, data


def add_output_arguments(group: argparse._ArgumentGroup) -> None:
    """--pred-only, --grayscale, --save-numpy, --save-png16 (per frame for videos)."""
    group.add_argument("--pred-only", action="store_true", help="save the depth only, not image | depth")
    group.add_argument("--grayscale", action="store_true", help="grey depth map instead of the Spectral colour map")
    group.add_argument("--save-numpy", action="store_true", help="<stem>.npy: float32 metres, or relative disparity")
    group.add_argument(
        "--save-png16",
        action="store_true",
        help="<stem>.depth16.png: 16-bit millimetres (0: invalid), or relative disparity scaled to 0..65535 with "
        "the scale in <stem>.depth16.json",
    )


def add_camera_arguments(parser: argparse.ArgumentParser) -> None:
    """--intrinsics, --focal-length-x, --focal-length-y, --allow-offcentre-principal-point."""
    camera = parser.add_argument_group("camera")
    camera.add_argument(
        "--intrinsics",
        help="K of the original image(s): a .npy 3x3, a .txt (9 numbers or fx fy cx cy), a folder of <stem>.npy "
        "files, or fx,fy,cx,cy in pixels (OpenCV: the centre of pixel (u, v) is at (u, v)); a single K is for "
        "inputs of the first input's size and is scaled, with a warning, for others of the same aspect ratio",
    )
    camera.add_argument(
        "--focal-length-x", type=float, help="fx in pixels of every input, principal point at its centre"
    )
    camera.add_argument("--focal-length-y", type=float, help="fy in pixels (default: --focal-length-x)")
    camera.add_argument(
        OFFCENTRE_FLAG,
        action="store_true",
        help="accept K whose principal point lies far from the image centre (a crop, a shifted lens); without it such "
        "K is taken for K of an image of another size and refused (docs/DATA_CHECKS.md)",
    )


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """--backend, --batch-size, --export-cache, --device, --precision, --kernels, --compile."""
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument(
        "--backend",
        default="torch",
        choices=BACKENDS,
        help="onnxruntime / openvino (CPU): a checkpoint is exported to ONNX once per input size and cached",
    )
    runtime.add_argument("--batch-size", type=int, default=1, help="inputs of one network size per forward pass")
    runtime.add_argument(
        "--export-cache", help="folder of cached ONNX exports (default: onnx_cache/ beside the checkpoint)"
    )
    runtime.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (ONNX backends: cpu)")
    runtime.add_argument(
        "--precision",
        default="auto",
        choices=("auto", *PRECISIONS),
        help="auto: fp32, except OpenVINO in bf16 where the CPU runs bf16 natively; bf16: faster on CPUs with "
        "bf16 instructions and on GPUs, depth within 0.5 %% of fp32 (benchmarks/results.md); fp16: CUDA only",
    )
    runtime.add_argument(
        "--kernels",
        default="auto",
        help="--backend torch: auto times the attention implementation and the head layout on the first input of "
        "each size and caches the fastest (depth_anything_v2/kernels.py); or force some, e.g. "
        "attention=sdpa,head_layout=nchw (the others are timed)",
    )
    compiled = "a faster forward after a one-off compile per input shape (benchmarks/results.md)"
    runtime.add_argument(
        "--compile",
        action="store_true",
        help=f"torch.compile the model with its weights frozen (--backend torch): {compiled}",
    )


def checkpoint_path(args: argparse.Namespace) -> Path:
    """--load-from, or the official scripts' default checkpoint (in ./checkpoints or the repo's checkpoints/)."""
    if args.load_from is not None:
        return Path(args.load_from)
    encoder = args.encoder or "vitl"
    name = f"depth_anything_v2_{encoder}.pth"
    if args.max_depth is not None:
        raise DataError(
            f"--max-depth needs a metric checkpoint: add --load-from checkpoints/depth_anything_v2_metric_hypersim_"
            f"{encoder}.pth (indoor, --max-depth 20) or ..._metric_vkitti_{encoder}.pth (outdoor, --max-depth 80)"
        )
    candidates = list(dict.fromkeys([Path("checkpoints") / name, ROOT / "checkpoints" / name]))
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise DataError(
            f"no --load-from, so the official checkpoint {name} is used, but it is not in "
            f"{' or '.join(str(c.parent.resolve()) for c in candidates)}. Download it from "
            f"https://huggingface.co/depth-anything/Depth-Anything-V2-{OFFICIAL_SIZES[encoder]} into checkpoints/ "
            "(checkpoints/README.md lists every file), or pass --load-from CHECKPOINT, or load it by name: "
            f"--load-from depth-anything/Depth-Anything-V2-{OFFICIAL_SIZES[encoder]}"
        )
    return found


def load_runner(args: argparse.Namespace) -> Runner:
    """Check the model and runtime flags and build the runner they ask for (DataError / CheckpointError if not)."""
    if args.input_size <= 0 or args.input_size % PATCH_SIZE:
        nearest = max(PATCH_SIZE, round(args.input_size / PATCH_SIZE) * PATCH_SIZE)
        raise DataError(
            f"--input-size must be a positive multiple of {PATCH_SIZE}, got {args.input_size} (try {nearest})"
        )
    if args.batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.compile and args.backend != "torch":
        raise DataError(f"--compile is for --backend torch; {args.backend} optimises its graph itself")
    try:
        kernels = parse_kernels(args.kernels)
    except ValueError as error:
        raise DataError(str(error)) from None
    if kernels and args.backend != "torch":
        raise DataError(f"--kernels is for --backend torch; {args.backend} chooses its kernels itself")
    source = checkpoint_path(args)
    device = torch.device("cpu") if args.backend != "torch" and args.device == "auto" else resolve_device(args.device)
    precision = resolve_precision(args.backend, args.precision, device)
    if source.suffix == ".onnx":
        if args.backend == "torch":
            raise DataError(f"{source} is an ONNX model: add --backend onnxruntime or --backend openvino")
        if not source.is_file():
            raise DataError(f"{source}: ONNX file not found")
        info, fixed_size = describe_onnx(source, args.max_depth)
        if fixed_size:
            logger.info("%s takes %d x %d inputs: every input is resized to it, K with it", source, *fixed_size)
        return OnnxRunner(args.backend, precision, info, lambda height, width: source, fixed_size)

    def build(on: torch.device = torch.device("cpu")):
        return build_model_from_checkpoint(source, on, encoder=args.encoder, max_depth=args.max_depth)

    model = build(device)
    if args.max_depth is not None and model.max_depth is None:
        raise CheckpointError(f"{source}: --max-depth was given but this checkpoint is a relative model")
    if args.backend == "torch":
        if args.compile:
            compile_frozen(model)  # in place, so that the runner's model(...) runs the compiled forward
        return TorchRunner(model, device, precision, kernels)
    weights = checkpoint_weights_file(str(source))
    beside = source if source.exists() else None  # exports of a hub model are not put into the hub's cache
    graphs = CheckpointGraphs(weights, model, build, cache_folder(beside, args.export_cache))
    return OnnxRunner(args.backend, precision, ModelInfo.of(model), graphs)


def start(args: argparse.Namespace, inputs: list[Path]) -> tuple[CameraSource, Runner]:
    """The camera and the runner of a run over `inputs`, after checking --outdir and K against every input's size
    (DataError, CheckpointError): everything that can fail before any inference."""
    camera = CameraSource(
        args.intrinsics, args.focal_length_x, args.focal_length_y, args.allow_offcentre_principal_point
    )
    check_writable_folder(args.outdir)
    camera.check_inputs(inputs)
    return camera, load_runner(args)


def video_options(args: argparse.Namespace) -> VideoOptions:
    """What run_video.py (and run.py, for a video) makes of each video, from the flags."""
    return VideoOptions(
        args.input_size, args.batch_size, args.pred_only, args.grayscale, args.save_numpy, args.save_png16
    )


def log_model(runner: Runner, count: str, camera_given: bool) -> None:
    """One line on the model and what it runs on, one on how the camera is used."""
    info = runner.info
    kind = f"metric (max depth {info.max_depth:g} m)" if info.max_depth is not None else "relative"
    logger.info("%s %s model, %s", info.name, kind, count)
    if info.camera:
        use = "go into the camera encoder" if camera_given else "absent: the learned null camera is used"
        logger.info("camera-aware model; intrinsics %s", use)
    elif camera_given:
        logger.info("model has no camera encoder: intrinsics are used for the point cloud only")
