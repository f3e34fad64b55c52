"""The generic file-list dataset: `image depth [intrinsics]` per line, K kept true through augmentation."""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Callable, Collection

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from depth_anything_v2.configs import PATCH_SIZE
from depth_anything_v2.geometry import canonical_intrinsics

from .filelist import EMPTY_LIST, bad_lines, read_filelist
from .headers import size_mismatch
from .io import DataError, clean_depth, read_depth, read_image
from .protocol import EvalProtocol
from .transform import train_view, val_view

logger = logging.getLogger(__name__)


class GenericDatasetWithIntrinsics(Dataset):
    """RGB-D samples from a file list, with optional per-image intrinsics.

    Args:
        filelist_path: text file of `image depth [intrinsics]` lines (blank lines and # comments skipped).
        mode: 'train' (random zoom, crop to `size`, flip, colour jitter) or 'val' (resize with aspect kept,
            lower bound `size[0]`, multiples of 14; depth stays at its original resolution for evaluation).
        size: (height, width) of training crops, multiples of 14.
        depth_scale: metres per stored unit (.png: e.g. 1/256 KITTI, 1/1000 millimetres).
        min_depth, max_depth: ground truth outside this range (m) is marked invalid.
        zoom_range: (min, max) log-uniform zoom factor for calibrated training samples; None disables zoom.
        hflip: random horizontal flips (p = 0.5) in training.
        photometric: random brightness, contrast and saturation in training.
        camera_dropout: probability that a calibrated training sample is presented without K.
        skip_bad_samples: list lines that fail the checks of `read_filelist` (or of `dataset.check`) are dropped,
            logged and kept in `skipped_lines`; a sample that fails to load is logged, counted in `bad_samples` and
            replaced by the next one. Without it, both raise a DataError.
        depth_reader: `(path) -> (H, W) depth in metres` replacing the generic reader (named datasets); its NaN,
            inf, 0 and negative values become invalid, and the OSError / ValueError / KeyError it raises are
            reported as DataErrors naming the list line.
        teacher_cache: folder of cached teacher predictions (`<index>.npy`, see util.distill); every training
            sample then carries its warped `teacher_depth`.
        root: extra folder that relative list paths are resolved against first (named datasets' --data-root).
        eval_protocol: how this dataset is evaluated (named datasets declare theirs); None: the training range,
            no crop.
        allow_offcentre_principal_point: accept K whose principal point lies far from the image centre (crops,
            shifted lenses); by default such K is taken for K of an image of another size and refused.

    Samples are dicts: image (3, H, W) float32 ImageNet-normalized; depth (H, W) float32 metres (0 invalid);
    depth_valid (H, W) bool (ground truth inside [min_depth, max_depth]); image_valid (H, W) bool (False on zoom
    padding); intrinsics (3, 3) float32 in pixels of the returned image (`canonical_intrinsics` when absent);
    has_intrinsics bool; image_path str; index int; teacher_depth (H, W) float32 with a teacher cache.
    Indexing with (index, seed) makes the augmentation a function of the seed (exact resume). Building a dataset
    sets OpenCV to one thread in this process (see `seed_worker`).
    """

    def __init__(
        self,
        filelist_path: str | Path,
        mode: str = "train",
        size: tuple[int, int] = (518, 518),
        depth_scale: float = 1.0,
        min_depth: float = 1e-3,
        max_depth: float = math.inf,
        zoom_range: tuple[float, float] | None = (0.7, 2.0),
        hflip: bool = True,
        photometric: bool = True,
        camera_dropout: float = 0.0,
        skip_bad_samples: bool = False,
        depth_reader: Callable[[Path], np.ndarray] | None = None,
        teacher_cache: str | Path | None = None,
        root: str | Path | None = None,
        eval_protocol: EvalProtocol | None = None,
        allow_offcentre_principal_point: bool = False,
    ) -> None:
        if mode not in ("train", "val"):
            raise ValueError(f"mode must be 'train' or 'val', got {mode!r}")
        if size[0] % PATCH_SIZE or size[1] % PATCH_SIZE:
            raise ValueError(f"size {size} must be multiples of {PATCH_SIZE}")
        self.filelist_path = Path(filelist_path)
        self.entries, problems = read_filelist(self.filelist_path, root, allow_offcentre_principal_point)
        if problems and not skip_bad_samples:
            raise bad_lines(self.filelist_path, problems)
        self.skipped_lines: list[str] = []
        self.skip(problems)
        if not self.entries:
            raise DataError(f"{self.filelist_path}: {EMPTY_LIST}")
        self.mode, self.size = mode, tuple(size)
        self.depth_scale, self.min_depth, self.max_depth = depth_scale, min_depth, max_depth
        self.zoom_range, self.hflip, self.photometric = zoom_range, hflip, photometric
        self.camera_dropout = camera_dropout
        self.skip_bad_samples = skip_bad_samples
        self.depth_reader = depth_reader
        self.teacher_cache = None if teacher_cache is None else Path(teacher_cache)
        self._teacher_keys: dict[Path, str] = {}  # image path -> its cache key, see teacher_cache_path
        self.eval_protocol = eval_protocol
        self.bad_samples: list[str] = []
        # DataLoader workers are forked from this process. A child that changes OpenCV's thread count while its
        # parent had live pool threads can deadlock (the pool's condition variables are copied mid-use), so the
        # parent drops its pool before any fork; workers then inherit one thread and touch nothing.
        cv2.setNumThreads(1)

    def __len__(self) -> int:
        return len(self.entries)

    def skip(self, problems: list[str], indices: Collection[int] = ()) -> None:
        """Drop the entries at `indices` and record and log `problems`, one message per skipped list line
        (--skip-bad-samples: the checks at start skip lines instead of stopping); DataError if none is left."""
        if not problems:
            return
        dropped = set(indices)
        self.entries = [entry for i, entry in enumerate(self.entries) if i not in dropped]
        self.skipped_lines.extend(problems)
        logger.warning(
            "skipping %d bad line(s) of %s (--skip-bad-samples):\n  %s", len(problems), self.filelist_path,
            "\n  ".join(problems),
        )  # fmt: skip
        if not self.entries:
            raise DataError(f"{self.filelist_path}: every line is bad (all {len(self.skipped_lines)} skipped)")

    def read_depth(self, index: int) -> np.ndarray:
        """(H, W) float32 depth in metres of one entry, 0 where invalid; DataError names the list line."""
        entry = self.entries[index]
        try:
            if self.depth_reader is None:
                return read_depth(entry.depth, self.depth_scale)
            return clean_depth(self.depth_reader(entry.depth))  # a plug-in reader gets our invalid-value rule
        except DataError as err:
            raise DataError(f"{self.where(index)}: {err}") from None
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"{self.where(index)}: {entry.depth}: cannot read depth ({err!r})") from None

    def where(self, index: int) -> str:
        """`<list>:<line>` of one entry, the prefix of every message about it."""
        return f"{self.filelist_path}:{self.entries[index].line}"

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(RGB uint8 image, depth in metres, K or None) of one entry; DataError names the list line."""
        entry = self.entries[index]
        try:
            image = read_image(entry.image)
        except DataError as err:
            raise DataError(f"{self.where(index)}: {err}") from None
        depth = self.read_depth(index)
        if depth.shape != image.shape[:2]:
            orientation = entry.image_size.orientation if entry.image_size else None
            problem = size_mismatch(entry.depth, depth.shape, entry.image, image.shape[:2], orientation)
            raise DataError(f"{self.where(index)}: {problem}")
        return image, depth, entry.intrinsics

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, seed = item if isinstance(item, tuple) else (item, None)
        if not self.skip_bad_samples:
            return self._checked_sample(index, seed)
        for attempt in range(len(self)):
            candidate = (index + attempt) % len(self)
            try:
                return self._checked_sample(candidate, seed)
            except DataError as err:
                self.bad_samples.append(str(err))
                logger.warning("skipping bad sample (%d so far in this process): %s", len(self.bad_samples), err)
        raise DataError(f"{self.filelist_path}: every sample failed to load")

    def _checked_sample(self, index: int, seed: int | None) -> dict:
        """`_sample`, with any reading or decoding error turned into a one-line DataError naming the list line (a
        DataLoader worker's error then reaches the log as that line)."""
        try:
            return self._sample(index, seed)
        except DataError:
            raise
        except (OSError, ValueError, cv2.error) as err:
            raise DataError(f"{self.where(index)}: {self.entries[index].image}: {type(err).__name__}: {err}") from None

    def _sample(self, index: int, seed: int | None) -> dict:
        image, depth, K = self.load(index)
        has_intrinsics = K is not None
        if K is None:
            K = canonical_intrinsics(*image.shape[:2])
        if self.mode == "val":
            net, K = val_view(image, K, self.size[0])
            image_valid = np.ones(net.shape[1:], dtype=bool)
            teacher = None
        else:
            rng = np.random.default_rng(seed if seed is not None else np.random.randint(2**31))
            if has_intrinsics and rng.random() < self.camera_dropout:
                has_intrinsics = False
            zoom = 1.0
            if has_intrinsics and self.zoom_range is not None:
                zoom = math.exp(rng.uniform(math.log(self.zoom_range[0]), math.log(self.zoom_range[1])))
            teacher = self._cached_teacher(index)
            flip = self.hflip and rng.random() < 0.5
            view = train_view(image, depth, K, self.size, zoom, flip, rng, teacher, self.photometric)
            net, depth, image_valid, K, teacher = (
                view["image"],
                view["depth"],
                view["image_valid"],
                view["K"],
                view["teacher"],
            )
        depth_valid = (depth >= self.min_depth) & (depth <= self.max_depth)
        sample = {
            "image": torch.from_numpy(net),
            "depth": torch.from_numpy(depth),
            "depth_valid": torch.from_numpy(depth_valid),
            "image_valid": torch.from_numpy(image_valid),
            "intrinsics": torch.from_numpy(K.astype(np.float32)),
            "has_intrinsics": has_intrinsics,
            "image_path": str(self.entries[index].image),
            "index": index,
        }
        if teacher is not None:
            sample["teacher_depth"] = torch.from_numpy(teacher)
        return sample

    def teacher_cache_path(self, index: int) -> Path:
        """The cached teacher prediction of one entry in `teacher_cache`: named by the image's resolved path, size and
        modification time, so an edited list or a replaced image never meets another image's prediction."""
        image = self.entries[index].image
        if image not in self._teacher_keys:  # once per image and process, not per sample and epoch
            resolved = image.resolve()
            stat = resolved.stat()
            self._teacher_keys[image] = hashlib.sha1(
                f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}".encode()
            ).hexdigest()[:20]
        return self.teacher_cache / f"{self._teacher_keys[image]}.npy"

    def _cached_teacher(self, index: int) -> np.ndarray | None:
        if self.teacher_cache is None:
            return None
        path = self.teacher_cache_path(index)
        if not path.is_file():
            raise DataError(f"{self.entries[index].image}: no cached teacher prediction {path}")
        return np.load(path)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker init: one OpenCV thread per worker (workers already run in parallel) and numpy seeded
    from the worker's torch seed (torch itself already uses one thread in workers)."""
    if cv2.getNumThreads() != 1:  # already 1 when inherited from a parent that built our dataset
        cv2.setNumThreads(1)
    np.random.seed(torch.initial_seed() % 2**32)
