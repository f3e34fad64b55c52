"""From images to depth maps at their own resolution through any runner (`inference.backends`), in batches.

    predictor = BatchPredictor(runner, input_size=518, batch_size=4)
    for job, depth in predictor.add(Job("photo", cv2.imread("photo.jpg"), K)) + predictor.flush():
        ...  # depth: (h, w) float32 of job.image, metres or relative disparity

The steps are those of `DepthAnythingV2.infer_image`: the official resize and normalisation, K mapped to the
network input, and the prediction resized back (bilinear, corners aligned).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from depth_anything_v2.geometry import scale_intrinsics
from depth_anything_v2.preprocess import prepare_image
from inference.backends import Runner


@dataclass
class Job:
    """One image to predict.

    Attributes:
        key: the caller's handle (a path, a frame number).
        image: (h, w, 3) uint8 BGR.
        K: (3, 3) intrinsics in pixels of `image`, or None.
    """

    key: object
    image: np.ndarray
    K: np.ndarray | None


def network_input(
    image: np.ndarray, input_size: int, K: np.ndarray | None, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """((3, H, W) float32 network input, (3, 3) float32 K in its pixels, zeros without K) of a BGR image.

    Args:
        image: (h, w, 3) uint8 BGR.
        input_size: the network's short side (the official aspect-keeping resize), multiple of 14.
        K: (3, 3) intrinsics in pixels of `image`, or None.
        size: (H, W) to resize to instead (a runner with a fixed input size); K follows either resize.
    """
    x = prepare_image(image, input_size, size)
    if K is None:
        return x, np.zeros((3, 3), dtype=np.float32)
    h, w = image.shape[:2]
    return x, scale_intrinsics(K, x.shape[2] / w, x.shape[1] / h).astype(np.float32)


def resize_depth(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) network-size depth -> (height, width) float32, bilinear with corners aligned (as infer_image)."""
    out = F.interpolate(torch.from_numpy(depth)[None, None], (height, width), mode="bilinear", align_corners=True)
    return out[0, 0].numpy()


class BatchPredictor:
    """Runs consecutive jobs of the same network input size together, up to `batch_size` at a time, in order.

    `add` returns the jobs finished by it (a batch that filled up, or the pending one when the size changes);
    `flush` runs what is left. Each finished job comes with its (h, w) float32 depth.
    """

    def __init__(self, runner: Runner, input_size: int, batch_size: int = 1) -> None:
        self.runner, self.input_size, self.batch_size = runner, input_size, batch_size
        self.pending: list[tuple[Job, np.ndarray, np.ndarray]] = []

    def add(self, job: Job) -> list[tuple[Job, np.ndarray]]:
        x, K = network_input(job.image, self.input_size, job.K, self.runner.fixed_size)
        done = self.flush() if self.pending and self.pending[0][1].shape != x.shape else []
        self.pending.append((job, x, K))
        if len(self.pending) >= self.batch_size:
            done += self.flush()
        return done

    def flush(self) -> list[tuple[Job, np.ndarray]]:
        if not self.pending:
            return []
        jobs, xs, Ks = zip(*self.pending)
        self.pending = []
        depth = self.runner(np.stack(xs), np.stack(Ks))
        return [(job, resize_depth(d, *job.image.shape[:2])) for job, d in zip(jobs, depth)]
