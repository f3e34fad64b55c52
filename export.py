"""Export for deployment (ONNX: one input size, a dynamic batch, K as a second input for camera models) or for
sharing (--format hf: a model folder for the Hugging Face hub).

    # our camera-aware checkpoint for 518 x 518 inputs
    python export.py --load-from runs/student/latest.pth --output student_518.onnx --input-size 518

    # the official relative vits (checkpoints/depth_anything_v2_vits.pth) for 518 x 686 (H x W) inputs
    python export.py --encoder vits --output vits_518x686.onnx --input-size 518 686

    # run it
    python run.py --load-from student_518.onnx --backend openvino --img-path photos/ --outdir out

    # a folder to upload to the Hugging Face hub (docs/HUB.md): transformers' format for a camera-less model
    python export.py --format hf --load-from runs/student/latest.pth --output student-hf --repo-id me/student

The graph: input `image` (B, 3, H, W) float32, RGB normalised with the ImageNet mean and std; for camera models
input `intrinsics` (B, 3, 3) float32, K in pixels of `image` (a row of zeros: no camera, the learned null camera);
output `depth` (B, H, W) float32, metres for a metric model, relative disparity otherwise. The position
embeddings are computed for H x W at export. After the export the graph is run with ONNX Runtime against PyTorch
(fp32) and the median relative error printed; over 1e-4 the exit code is 1.

--format hf writes config.json, model.safetensors and a model card (README.md, with the run's datasets and last
evaluation from metrics.jsonl beside the checkpoint): in transformers' format (loadable by
`DepthAnythingForDepthEstimation` and its depth-estimation pipeline) for a camera-less model, else in this repo's
format (`DepthAnythingV2.from_pretrained`). The folder is then loaded back, in transformers for a camera-less model,
and its 518 x 518 depth compared with the checkpoint's; over 1e-4 (largest difference / largest depth) the exit
code is 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dataset.io import DataError
from depth_anything_v2 import PATCH_SIZE
from depth_anything_v2.loading import CheckpointError, build_model_from_checkpoint, read_checkpoint
from inference.args import add_model_arguments, checkpoint_path
from inference.hub_export import check_folder_output, compare_folder, training_summary
from inference.inputs import check_writable_folder
from inference.onnx_export import OPSET, compare_with_torch, export_onnx

logger = logging.getLogger(__name__)

PARITY_LIMIT = 1e-4
FORMATS = ("onnx", "hf")


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line flags: the model, the output and its input size, the check."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser, export=True)
    export = parser.add_argument_group("export")
    export.add_argument(
        "--format",
        choices=FORMATS,
        default="onnx",
        help="onnx: an ONNX graph (default); hf: a model folder for the Hugging Face hub (docs/HUB.md)",
    )
    export.add_argument("--output", required=True, help="the .onnx file to write; for --format hf a new folder")
    export.add_argument("--repo-id", help="--format hf: the hub name the model card's commands use (ORG/NAME)")
    export.add_argument(
        "--input-size",
        type=int,
        nargs="+",
        default=[518],
        metavar="PX",
        help=f"network input H, or H W, in pixels (W defaults to H), multiples of {PATCH_SIZE}",
    )
    export.add_argument("--opset", type=int, default=OPSET, help="ONNX opset")
    export.add_argument(
        "--no-check", action="store_true", help="skip the check against PyTorch (ONNX Runtime; hf: transformers)"
    )
    return parser


def check_args(args: argparse.Namespace) -> tuple[int, int]:
    """(H, W) of --input-size, after checking it and --output (DataError)."""
    if len(args.input_size) > 2:
        raise DataError(f"--input-size takes H or H W, got {len(args.input_size)} numbers")
    height, width = args.input_size if len(args.input_size) == 2 else args.input_size * 2
    if min(height, width) <= 0 or height % PATCH_SIZE or width % PATCH_SIZE:
        raise DataError(
            f"--input-size {height} {width}: both must be positive multiples of {PATCH_SIZE} "
            f"(e.g. {max(PATCH_SIZE, round(height / PATCH_SIZE) * PATCH_SIZE)})"
        )
    output = Path(args.output)
    if args.format == "hf":
        check_writable_folder(output.parent, "--output's folder")
        return height, width
    if output.suffix != ".onnx":
        raise DataError(f"--output {output}: give a file name ending in .onnx")
    if output.is_dir():
        raise DataError(f"--output {output}: is a folder; give a file name ending in .onnx")
    check_writable_folder(output.parent, "--output's folder")
    return height, width


def main(args: argparse.Namespace) -> int:
    """Export and check. Returns the exit code: 0, 1 if the check failed, 2 if nothing could be exported."""
    try:
        height, width = check_args(args)
        source = checkpoint_path(args)
        if source.suffix == ".onnx":
            raise DataError(f"--load-from {source} is already an ONNX graph; give the checkpoint it came from")
        checkpoint = read_checkpoint(source)
        model = build_model_from_checkpoint(
            source, "cpu", encoder=args.encoder, max_depth=args.max_depth, obj=checkpoint
        )
        if args.format == "hf":
            check_folder_output(Path(args.output), camera_less_check=model.cam_encoder is None and not args.no_check)
    except (DataError, CheckpointError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.format == "hf":
        return export_folder(args, source, checkpoint, model)
    kind = f"metric (max depth {model.max_depth:g} m)" if model.max_depth is not None else "relative"
    camera = model.cam_encoder is not None
    logger.info("exporting %s %s %s model for %d x %d inputs", source, model.encoder, kind, height, width)
    export_onnx(model, Path(args.output), height, width, args.opset)
    inputs = f"image (B, 3, {height}, {width})" + (", intrinsics (B, 3, 3)" if camera else "")
    logger.info("wrote %s: inputs %s -> depth (B, %d, %d)", args.output, inputs, height, width)
    if args.no_check:
        return 0
    error = compare_with_torch(Path(args.output), model)
    verdict = "ok" if error <= PARITY_LIMIT else f"ABOVE the {PARITY_LIMIT:g} limit"
    logger.info("ONNX Runtime vs PyTorch (fp32): median relative error %.2e, %s", error, verdict)
    return 0 if error <= PARITY_LIMIT else 1


def export_folder(args: argparse.Namespace, source: Path, checkpoint: dict, model) -> int:
    """--format hf: write the folder and check it. Returns the exit code (1 if the check failed)."""
    output = Path(args.output)
    written = model.save_pretrained(output, training_summary(source, checkpoint), args.repo_id)
    logger.info("wrote %s (%s format): config.json, model.safetensors, README.md", output, written)
    if args.no_check:
        return 0
    loader, error = compare_folder(output, model)
    verdict = "ok" if error <= PARITY_LIMIT else f"ABOVE the {PARITY_LIMIT:g} limit"
    logger.info("%s vs PyTorch (fp32, 518 x 518): largest relative difference %.2e, %s", loader, error, verdict)
    return 0 if error <= PARITY_LIMIT else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main(get_args_parser().parse_args()))
