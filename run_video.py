"""Depth Anything V2 on videos: each frame's depth next to it, in colours that keep one scale across frames.

    # the official command: relative depth with checkpoints/depth_anything_v2_vitl.pth, one output per video
    python run_video.py --encoder vitl --video-path assets/examples_video --outdir video_depth_vis [--pred-only]

    # our metric camera-aware checkpoint, the camera's K for every frame, raw metres per frame, on OpenVINO
    python run_video.py --load-from runs/student/latest.pth --video-path clip.mp4 --outdir out \\
        --intrinsics 1000,1000,640,360 --save-numpy --backend openvino --batch-size 4

--video-path is a video, a folder of videos (not searched recursively) or a .txt list of them. For each video
<stem>: <outdir>/<stem>.mp4 (input | depth, or the depth only with --pred-only; the input's frame rate and frame
size, mp4v, no audio), and per frame <outdir>/<stem>/<frame>.npy with --save-numpy and .depth16.png with
--save-png16. Frames are streamed (never the whole video in memory). Colours: [0, max depth] for a metric model;
for a relative one a running robust range (2nd-98th percentiles, smoothed over frames), not each frame's own
min-max, which is what makes depth videos flicker. Unreadable videos are reported at the end (exit code 1).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dataset.io import DataError
from depth_anything_v2.loading import CheckpointError
from inference.args import inference_parser, log_model, start, video_options
from inference.inputs import VIDEO_SUFFIXES, Failures, list_inputs
from inference.video import depth_video
from util.precision import tune_allocator

logger = logging.getLogger(__name__)


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line flags, in groups: model, input and output, camera, runtime."""
    inputs = "a video, a folder of videos, or a .txt list of videos"
    return inference_parser(__doc__, "--video-path", inputs, "./vis_video_depth")[0]


def list_videos(spec: str) -> list[tuple[Path, str]]:
    """The videos of --video-path; a single file is taken as a video whatever its suffix (OpenCV decides)."""
    path = Path(spec)
    if path.is_file() and path.suffix.lower() != ".txt":
        return [(path, "")]
    images, videos = list_inputs(spec, "--video-path")
    if not videos:
        raise DataError(f"{path}: no videos ({', '.join(VIDEO_SUFFIXES)}) here; for images use run.py")
    if images:
        logger.warning("%s: skipping %d images (run.py makes their depth maps)", path, len(images))
    return videos


def main(args: argparse.Namespace) -> int:
    """Write the depth video of every input video.

    Returns:
        Exit code: 0 if every video was processed, 1 if some failed (listed on stderr), 2 if nothing could start.
    """
    try:
        videos = list_videos(args.video_path)
        camera, runner = start(args, [path for path, _ in videos])
    except (DataError, CheckpointError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    log_model(runner, f"{args.backend} backend, {len(videos)} videos", camera.given)
    failures = Failures()
    Path(args.outdir).mkdir(parents=True, exist_ok=True)
    for path, origin in videos:
        try:
            depth_video(path, Path(args.outdir), runner, camera, video_options(args))
        except (DataError, OSError) as err:
            failures.add(path, origin, err)
    return failures.report(len(videos), "videos")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    tune_allocator()  # before the first large tensor (benchmarks/results.md)
    sys.exit(main(get_args_parser().parse_args()))
