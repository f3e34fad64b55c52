"""Depth videos: frames streamed through OpenCV, predicted in batches, coloured with one range across frames.

    frames = depth_video(Path("clip.mp4"), Path("out"), runner, CameraSource(None, None, None), VideoOptions())
    # -> out/clip.mp4: input | depth side by side (or the depth only), the input's frame rate and frame size,
    #    mp4v, no audio; with save_numpy / save_png16 also out/clip/000000.npy, out/clip/000000.depth16.png, ...

Frames are read one at a time and written as soon as their batch is predicted: memory does not grow with the video.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dataset.io import DataError
from dataset.progress import progress
from inference.backends import Runner
from inference.inputs import CameraSource
from inference.predict import BatchPredictor, Job
from inference.raw_depth import write_raw_depth
from util.vis import colorize, side_by_side

logger = logging.getLogger(__name__)

FOURCC = "mp4v"
DEFAULT_FPS = 30.0


class ColourRange:
    """The colour normalisation of a video's depth, fixed across frames (per-frame min-max is what flickers).

    Metric depth: [0, max_depth] metres for every frame. Relative disparity: a running robust range, the
    `percentiles` of the first frame, then an exponential moving average (weight `momentum` on the past) of each
    frame's percentiles: a still scene keeps its colours, and a changing one is followed over about
    1 / (1 - momentum) frames instead of jumping at every frame.

    Args:
        max_depth: the metric range in metres, None for relative disparity.
        momentum: weight of the running range against the new frame's, in [0, 1).
        percentiles: (low, high) percentiles of a frame's finite values, in [0, 100].
    """

    def __init__(self, max_depth: float | None, momentum: float = 0.9, percentiles: tuple = (2.0, 98.0)) -> None:
        self.max_depth, self.momentum, self.percentiles = max_depth, momentum, percentiles
        self.range: tuple[float, float] | None = None

    def update(self, depth: np.ndarray) -> tuple[float, float]:
        """The (vmin, vmax) to colour this frame with, in the units of `depth`."""
        if self.max_depth is not None:
            return 0.0, self.max_depth
        finite = depth[np.isfinite(depth)]
        low, high = np.percentile(finite, self.percentiles) if finite.size else (0.0, 1.0)
        if self.range is None:
            self.range = (float(low), float(high))
        else:
            m = self.momentum
            self.range = (m * self.range[0] + (1 - m) * low, m * self.range[1] + (1 - m) * high)
        return self.range


@dataclass
class VideoOptions:
    """How to predict (network short side, frames per batch) and what to write for each video: the picture
    (`pred_only`, `grayscale`) and the raw depth of each frame (`save_numpy`, `save_png16`)."""

    input_size: int = 518
    batch_size: int = 1
    pred_only: bool = False
    grayscale: bool = False
    save_numpy: bool = False
    save_png16: bool = False


def _frame_rate(capture: cv2.VideoCapture, path: Path) -> float:
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not math.isfinite(fps) or fps <= 0:
        logger.warning("%s: the video does not say its frame rate; writing %g frames/s", path, DEFAULT_FPS)
        return DEFAULT_FPS
    return fps


def _depth_of_frames(
    capture: cv2.VideoCapture, frame: np.ndarray, path: Path, K: np.ndarray | None, predictor: BatchPredictor
) -> Iterator[tuple[Job, np.ndarray]]:
    """(job, depth in metres or relative) of every frame, in order, from the first `frame` (already read) on; the
    frames go to `predictor` in its batches."""
    height, width = frame.shape[:2]
    ok, index = True, 0
    while ok:
        if frame.shape[:2] != (height, width):
            raise DataError(f"{path}: frame {index} is {frame.shape[1]} x {frame.shape[0]} px, the first "
                            f"was {width} x {height} px; a video must keep one frame size")  # fmt: skip
        finished = predictor.add(Job(index, frame, K))
        index += 1
        ok, frame = capture.read()
        yield from finished + (predictor.flush() if not ok else [])


def depth_video(path: Path, outdir: Path, runner: Runner, camera: CameraSource, options: VideoOptions) -> int:
    """Write the depth video of `path` into `outdir` (see the module docstring); returns the number of frames.

    Raises:
        DataError: the video cannot be opened or decoded, its frames change size, or the output would replace it.
        OSError: the output cannot be written.
    """
    out_path = outdir / f"{path.stem}.mp4"
    if out_path.resolve() == path.resolve():
        raise DataError(f"{path}: the output {out_path} would replace the input video; choose another --outdir")
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        raise DataError(f"{path}: cannot read video (missing, corrupt, or a codec this OpenCV build lacks)")
    height, width = frame.shape[:2]
    fps, total = _frame_rate(capture, path), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    K = camera(path, width, height)
    max_depth, predictor = runner.info.max_depth, BatchPredictor(runner, options.input_size, options.batch_size)
    size = (width if options.pred_only else 2 * width + 50, height)  # side_by_side's 50 px gap
    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*FOURCC), fps, size)
    raw_dir = outdir / path.stem
    if options.save_numpy or options.save_png16:
        raw_dir.mkdir(parents=True, exist_ok=True)
    colours, count, started = ColourRange(max_depth), 0, time.monotonic()
    try:
        if not writer.isOpened():
            raise OSError(f"{out_path}: cannot be written (OpenCV has no {FOURCC} writer, or the folder is read-only)")
        frames = _depth_of_frames(capture, frame, path, K, predictor)
        for job, depth in progress(frames, total if total > 0 else None, path.name, "frame", logger):
            vmin, vmax = colours.update(depth)
            picture = colorize(depth, vmin, vmax, reverse=max_depth is None, grayscale=options.grayscale)
            writer.write(picture if options.pred_only else side_by_side(job.image, picture))
            write_raw_depth(raw_dir / f"{job.key:06d}", depth, max_depth is not None, options.save_numpy,
                            options.save_png16)  # fmt: skip
            count += 1
    finally:
        capture.release()
        writer.release()
    seconds = time.monotonic() - started
    logger.info("%s: %d frames (a %.3g frames/s video) in %.1f s, %.2f frames/s -> %s", path, count, fps, seconds,
                count / max(seconds, 1e-9), out_path)  # fmt: skip
    return count
