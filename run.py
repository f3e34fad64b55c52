"""Depth Anything V2 inference: images (and videos) -> depth pictures, raw depth (.npy, 16-bit PNG), point clouds.

    # the official command: relative depth with checkpoints/depth_anything_v2_vitl.pth
    python run.py --encoder vitl --img-path assets/examples --outdir depth_vis [--pred-only] [--grayscale]

    # metric depth (official indoor model), K of the original photo, raw metres and a point cloud
    python run.py --load-from checkpoints/depth_anything_v2_metric_hypersim_vitl.pth --max-depth 20 \\
        --img-path photo.jpg --outdir out --intrinsics 1000,1000,640,360 --save-numpy --save-ply

    # our camera-aware checkpoint, one K per image (intrinsics/<image stem>.npy), 16-bit PNG depth
    python run.py --load-from runs/student/latest.pth --img-path images.txt --outdir out --intrinsics intrinsics/ \\
        --save-png16

    # on OpenVINO (the checkpoint is exported to ONNX once per input size and cached), 4 images per batch
    python run.py --load-from runs/student/latest.pth --img-path photos/ --outdir out --backend openvino \\
        --batch-size 4

Outputs per image in --outdir: <stem>.png (image | colourised depth, or the depth only with --pred-only),
<stem>.npy with --save-numpy (float32: metres for a metric model, relative disparity otherwise),
<stem>.depth16.png with --save-png16 (millimetres; relative: scaled, the scale in <stem>.depth16.json) and
<stem>.ply with --save-ply. A video (an --img-path file, or one in the folder or list) gives <stem>.mp4 as
run_video.py does. Unreadable inputs are reported at the end and make the exit code 1; the others are written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm.contrib.logging import logging_redirect_tqdm

from dataset.io import DataError
from dataset.progress import progress
from depth_anything_v2.loading import CheckpointError
from inference.args import inference_parser, log_model, start, video_options
from inference.depth_files import point_cloud
from inference.inputs import CameraSource, Failures, list_inputs
from inference.predict import BatchPredictor, Job
from inference.raw_depth import write_raw_depth
from inference.video import depth_video
from util.ply import write_ply
from util.precision import tune_allocator
from util.vis import colorize, side_by_side

logger = logging.getLogger(__name__)

PLY_REQUIREMENT = (
    "--save-ply needs a metric model (--max-depth or a metric checkpoint) and the camera (--intrinsics or "
    "--focal-length-x)"
)


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line flags, in groups: model, input and output, camera, runtime."""
    inputs = "an image or video, a folder of them, or a .txt list of them"
    parser, data = inference_parser(__doc__, "--img-path", inputs, "./vis_depth")
    data.add_argument("--save-ply", action="store_true", help="<stem>.ply coloured point cloud (metric + K only)")
    return parser


def write_outputs(
    raw: np.ndarray, depth: np.ndarray, K: np.ndarray | None, metric: bool, args: argparse.Namespace, base: Path
) -> None:
    """The outputs of one image: `base`.png (and .npy, .depth16.png, .ply as asked).

    Args:
        raw: (h, w, 3) uint8 BGR image.
        depth: (h, w) float32 metres (metric) or relative disparity.
        K: (3, 3) intrinsics in pixels of `raw` (needed for the point cloud).
        metric: whether `depth` is in metres.
        args: the flags (pred_only, grayscale, save_numpy, save_png16, save_ply).
        base: output path without suffix.
    """
    # Metric depth: near is small, so plain Spectral makes it red; disparity: near is large, so Spectral_r.
    vis = colorize(depth, reverse=not metric, grayscale=args.grayscale)
    if not args.pred_only:
        vis = side_by_side(raw, vis)
    if not cv2.imwrite(f"{base}.png", vis):
        raise OSError(f"{base}.png: could not be written")
    write_raw_depth(base, depth, metric, args.save_numpy, args.save_png16)
    if args.save_ply:
        write_ply(f"{base}.ply", *point_cloud(depth, K, raw))


def read_input(path: Path, camera: CameraSource) -> tuple[np.ndarray, np.ndarray | None]:
    """(BGR image, its K or None); DataError naming the file when it cannot be read or K does not fit it."""
    raw = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if raw is None:
        raise DataError(f"{path}: cannot read image (missing, corrupt or not an image)")
    return raw, camera(path, raw.shape[1], raw.shape[0])


def main(args: argparse.Namespace) -> int:
    """Run inference on every input.

    Returns:
        Exit code: 0 if every input was processed, 1 if some failed (listed on stderr), 2 if nothing could start.
    """
    try:
        if args.save_ply and (args.intrinsics, args.focal_length_x, args.focal_length_y) == (None, None, None):
            raise DataError(PLY_REQUIREMENT)
        images, videos = list_inputs(args.img_path)
        if args.save_ply and videos:
            raise DataError(f"--save-ply is for images; {videos[0][0]} is a video (drop --save-ply or the video)")
        camera, runner = start(args, [path for path, _ in images + videos])
        if args.save_ply and runner.info.max_depth is None:
            raise DataError(PLY_REQUIREMENT)
    except (DataError, CheckpointError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    log_model(runner, f"{args.backend} backend, {len(images)} images, {len(videos)} videos", camera.given)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    metric = runner.info.max_depth is not None
    predictor = BatchPredictor(runner, args.input_size, args.batch_size)
    failures = Failures()
    claimed: dict[str, Path] = {}
    written = 0

    def finish(done: list[tuple[Job, np.ndarray]]) -> None:
        nonlocal written
        for job, depth in done:
            path, origin = job.key
            try:
                write_outputs(job.image, depth, job.K, metric, args, outdir / path.stem)
                written += 1
            except (DataError, OSError, cv2.error) as err:
                failures.add(path, origin, err)

    with logging_redirect_tqdm():  # on a terminal, log lines go above the progress bar, not into it
        for path, origin in progress(images, len(images), "depth", "img", logger) if images else []:
            try:
                if path.stem in claimed:
                    raise DataError(f"{path}: outputs {path.stem}.* were already written for {claimed[path.stem]}")
                raw, K = read_input(path, camera)
                claimed[path.stem] = path
                finish(predictor.add(Job((path, origin), raw, K)))
            except (DataError, OSError, cv2.error) as err:
                failures.add(path, origin, err)
        finish(predictor.flush())
    for path, origin in videos:
        try:
            depth_video(path, outdir, runner, camera, video_options(args))
            written += 1
        except (DataError, OSError, cv2.error) as err:
            failures.add(path, origin, err)

    total = len(images) + len(videos)
    logger.info("wrote %d of %d inputs to %s", written, total, outdir)
    return failures.report(total, "inputs" if videos else "images")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    tune_allocator()  # before the first large tensor (benchmarks/results.md)
    sys.exit(main(get_args_parser().parse_args()))
