"""Depth Anything V2 inference: images -> depth visualisations, raw depth (.npy) and coloured point clouds (.ply).

    # relative depth of one photo (official checkpoint; the encoder is read from the weights)
    python run.py --load-from checkpoints/depth_anything_v2_vitl.pth --img-path photo.jpg --outdir out

    # metric depth (official indoor model), K of the original photo, raw metres and a point cloud
    python run.py --load-from checkpoints/depth_anything_v2_metric_hypersim_vitl.pth --max-depth 20 \\
        --img-path photo.jpg --outdir out --intrinsics 1000,1000,640,360 --save-numpy --save-ply

    # our camera-aware checkpoint (encoder, max depth and camera settings come from the file),
    # a list of images and one K per image (intrinsics/<image stem>.npy)
    python run.py --load-from runs/student/latest.pth --img-path images.txt --outdir out --intrinsics intrinsics/

Outputs per image in --outdir: <stem>.png (image | colourised depth, or the depth only with --pred-only),
<stem>.npy with --save-numpy (float32: metres for a metric model, relative disparity otherwise) and <stem>.ply
with --save-ply. Unreadable images are reported at the end and make the exit code 1; the others are still written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from dataset.io import IMAGE_SUFFIXES, DataError, read_intrinsics
from depth_anything_v2 import MODEL_CONFIGS, PATCH_SIZE, DepthAnythingV2
from depth_anything_v2.geometry import make_intrinsics, unproject, validate_intrinsics
from depth_anything_v2.loading import CheckpointError, build_model_from_checkpoint
from util.dist import resolve_device
from util.ply import write_ply
from util.precision import PRECISIONS, autocast_context, compile_frozen, tune_allocator
from util.vis import colorize, side_by_side

logger = logging.getLogger(__name__)

PLY_REQUIREMENT = "--save-ply needs a metric model (--max-depth or a metric checkpoint) and --intrinsics"


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line flags, in groups: model, input and output, camera, runtime."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--load-from", required=True, help="official .pth or one of our checkpoints")
    model.add_argument("--encoder", choices=sorted(MODEL_CONFIGS), help="official checkpoints only (default: inferred)")
    model.add_argument("--max-depth", type=float, help="metric range (m) of an official metric checkpoint")
    model.add_argument("--input-size", type=int, default=518, help=f"network short side, multiple of {PATCH_SIZE}")
    data = parser.add_argument_group("input and output")
    data.add_argument("--img-path", required=True, help="an image, a folder of images, or a .txt list of images")
    data.add_argument("--outdir", default="./vis_depth")
    data.add_argument("--pred-only", action="store_true", help="save the depth only, not image | depth")
    data.add_argument("--grayscale", action="store_true", help="grey depth map instead of the Spectral colour map")
    data.add_argument("--save-numpy", action="store_true", help="<stem>.npy: float32 metres, or relative disparity")
    data.add_argument("--save-ply", action="store_true", help="<stem>.ply coloured point cloud (metric + K only)")
    camera = parser.add_argument_group("camera")
    camera.add_argument(
        "--intrinsics",
        help="K of the original image(s): a .npy 3x3, a .txt (9 numbers or fx fy cx cy), a folder of <stem>.npy "
        "files, or fx,fy,cx,cy in pixels (OpenCV: the centre of pixel (u, v) is at (u, v))",
    )
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    runtime.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="bf16 autocast: faster on CPUs with bf16 instructions and on GPUs, depth within 0.5 %% of fp32 "
        "(benchmarks/results.md); fp16: CUDA only",
    )
    runtime.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model with its weights frozen: a faster forward after a one-off compile per "
        "input shape (benchmarks/results.md)",
    )
    return parser


def list_images(img_path: str) -> list[tuple[Path, str]]:
    """Input images as (path, where it was listed: "" or "<list> line <n>") from an image, a folder or a .txt list.

    A list holds one path per line; blank lines and lines starting with # are skipped, and relative paths are
    relative to the list's folder. Folders are not searched recursively.
    """
    path = Path(img_path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return [(p, "") for p in files]
    if not path.is_file():
        raise DataError(f"{path}: --img-path is not a file or a folder")
    if path.suffix.lower() != ".txt":
        return [(path, "")]
    images = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            item = Path(line) if Path(line).is_absolute() else path.parent / line
            images.append((item, f"{path} line {number}"))
    if not images:
        raise DataError(f"{path}: the image list is empty")
    return images


def intrinsics_source(spec: str | None) -> Callable[[Path], np.ndarray | None]:
    """A function image path -> (3, 3) float64 K for that (original) image, or None without --intrinsics.

    Args:
        spec: a .npy / .txt file (one K for all images), a folder of <image stem>.npy (or .txt) files, or
            "fx,fy,cx,cy" in pixels.
    """
    if spec is None:
        return lambda image_path: None
    path = Path(spec)
    if path.is_dir():

        def from_folder(image_path: Path) -> np.ndarray:
            for suffix in (".npy", ".txt"):
                if (path / f"{image_path.stem}{suffix}").is_file():
                    return read_intrinsics(path / f"{image_path.stem}{suffix}")
            raise DataError(f"{image_path}: no intrinsics file {path / image_path.stem}.npy for this image")

        return from_folder
    if path.is_file():
        K = read_intrinsics(path)
    else:
        try:
            K = make_intrinsics(*(float(v) for v in spec.split(",")))
        except (TypeError, ValueError):
            raise DataError(f"--intrinsics {spec!r}: not a file, a folder, or four numbers fx,fy,cx,cy") from None
        problem = validate_intrinsics(K)
        if problem:
            raise DataError(f"--intrinsics {spec!r}: {problem}")
    return lambda image_path: K


def process_image(
    model: DepthAnythingV2, path: Path, K: np.ndarray | None, args: argparse.Namespace, outdir: Path
) -> None:
    """Predict one image and write its outputs; raises DataError naming the file when it cannot be read."""
    raw = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if raw is None:
        raise DataError(f"{path}: cannot read image (missing, corrupt or not an image)")
    metric = model.max_depth is not None
    depth = model.infer_image(raw, args.input_size, intrinsics=K)
    # Metric depth: near is small, so plain Spectral makes it red; disparity: near is large, so Spectral_r.
    vis = colorize(depth, reverse=not metric, grayscale=args.grayscale)
    if not args.pred_only:
        vis = side_by_side(raw, vis)
    if not cv2.imwrite(str(outdir / f"{path.stem}.png"), vis):
        raise OSError(f"{outdir / path.stem}.png: could not be written")
    if args.save_numpy:
        np.save(outdir / f"{path.stem}.npy", depth.astype(np.float32))
    if args.save_ply:
        valid = (np.isfinite(depth) & (depth > 0)).reshape(-1)
        points = unproject(depth, K).reshape(-1, 3)[valid].astype(np.float32)
        colors = raw[..., ::-1].reshape(-1, 3)[valid]
        write_ply(outdir / f"{path.stem}.ply", points, colors)


def main(args: argparse.Namespace) -> int:
    """Run inference on every input image.

    Returns:
        Exit code: 0 if every image was processed, 1 if some failed (listed on stderr), 2 if nothing could start.
    """
    try:
        if args.save_ply and args.intrinsics is None:
            raise DataError(PLY_REQUIREMENT)
        if args.input_size <= 0 or args.input_size % PATCH_SIZE:
            raise DataError(f"--input-size must be a positive multiple of {PATCH_SIZE}, got {args.input_size}")
        images = list_images(args.img_path)
        k_for = intrinsics_source(args.intrinsics)
        device = resolve_device(args.device)
        if args.precision == "fp16" and device.type != "cuda":
            raise DataError(f"--precision fp16 needs CUDA, the device is {device.type}; use bf16")
        model = build_model_from_checkpoint(args.load_from, device, encoder=args.encoder, max_depth=args.max_depth)
        if args.max_depth is not None and model.max_depth is None:
            raise CheckpointError(f"{args.load_from}: --max-depth was given but this checkpoint is a relative model")
        if args.save_ply and model.max_depth is None:
            raise DataError(PLY_REQUIREMENT)
        if args.compile:
            compile_frozen(model)  # in place, so that infer_image's self(...) runs the compiled forward
    except (DataError, CheckpointError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    kind = f"metric (max depth {model.max_depth:g} m)" if model.max_depth is not None else "relative"
    logger.info("%s %s model on %s, %d images", model.encoder, kind, device, len(images))
    if model.cam_encoder is not None:
        use = "go into the camera encoder" if args.intrinsics else "absent: the learned null camera is used"
        logger.info("camera-aware model; intrinsics %s", use)
    elif args.intrinsics:
        logger.info("model has no camera encoder: intrinsics are used for the point cloud only")

    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    written: dict[str, Path] = {}
    for path, origin in tqdm(images, desc="depth", unit="img"):
        try:
            if path.stem in written:
                raise DataError(f"{path}: outputs {path.stem}.* were already written for {written[path.stem]}")
            with autocast_context(device, args.precision):
                process_image(model, path, k_for(path), args, outdir)
            written[path.stem] = path
        except (DataError, OSError, cv2.error) as err:
            reason = str(err) if str(path) in str(err) else f"{path}: {err}"
            failed.append(f"{reason} (listed in {origin})" if origin else reason)
            logger.error(failed[-1])

    logger.info("wrote %d of %d images to %s", len(written), len(images), outdir)
    if failed:
        print(f"{len(failed)} of {len(images)} images failed:", file=sys.stderr)
        for reason in failed:
            print(f"  {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    tune_allocator()  # before the first large tensor (benchmarks/results.md)
    sys.exit(main(get_args_parser().parse_args()))
