"""The teacher cache of --cache-teacher: the teacher runs once per training image and its predictions are stored in a
folder keyed by what produced them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dataset import DataError, GenericDatasetWithIntrinsics
from depth_anything_v2.pretrained import checkpoint_weights_file

logger = logging.getLogger(__name__)


def teacher_identity(checkpoint: str, bf16: bool, input_size: int) -> dict:
    """What produces a cache's predictions: the teacher file's identity (path, size, modification time, first MiB),
    its precision and the input size."""
    path = checkpoint_weights_file(checkpoint)  # a hub name's file in the hub cache; a model folder's weights
    with open(path, "rb") as f:
        head = hashlib.sha256(f.read(1 << 20)).hexdigest()
    stat = path.stat()
    return {
        "teacher": str(path.resolve()),
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "first_mib_sha256": head,
        "precision": "bf16" if bf16 else "fp32",
        "input_size": input_size,
    }


def teacher_cache_dir(root: Path, checkpoint: str, bf16: bool, input_size: int) -> Path:
    """The cache folder of one teacher setting under `root`, keyed by `teacher_identity`: another teacher or setting
    gets another folder, never a stale cache. Nothing is written here (the run may still be refused);
    `cache_teacher_predictions` creates the folder and its `teacher.json`, which says what produced it."""
    identity = teacher_identity(checkpoint, bf16, input_size)
    return root / hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def write_teacher_json(folder: Path, identity: dict) -> None:
    """`folder/teacher.json`, written atomically (a temporary file renamed over it)."""
    tmp = folder / f".teacher.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(identity, indent=2))
    os.replace(tmp, folder / "teacher.json")


@torch.inference_mode()
def cache_teacher_predictions(
    teacher: nn.Module, dataset: GenericDatasetWithIntrinsics, input_size: int, rank: int = 0, world_size: int = 1
) -> tuple[int, int, list[str]]:
    """Run the teacher once per training image into `dataset.teacher_cache`, at the image's own resolution.

    The dataset then warps its cached map with each sample's augmentation (nearest, like the ground truth), so
    the teacher need not run every step. The cached target is the teacher's view of the whole image rather than
    of the crop; the distillation loss is scale-invariant, so the zoom's change of apparent scale does not
    matter. A file is named by its list entry (image path, size, modification time; see
    `GenericDatasetWithIntrinsics.teacher_cache_path`), so a changed list never pairs an image with another's
    target, and files already present are kept (a resumed run does not recompute them). With
    `dataset.skip_bad_samples`, an image that fails to load is skipped and listed, as in training.

    Rank 0 writes the folder's `teacher.json` (`teacher_identity` of `teacher` at `input_size`).

    Args:
        teacher: the frozen teacher (a FrozenTeacher: `model`, `checkpoint`, `bf16`).
        dataset: a GenericDatasetWithIntrinsics built with a teacher cache folder.
        input_size: network short side for the teacher (use the training crop size).
        rank, world_size: each process computes every world_size-th image.

    Returns:
        (computed, reused, skipped messages) of this process.
    """
    computed, reused, skipped = 0, 0, []
    dataset.teacher_cache.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        write_teacher_json(dataset.teacher_cache, teacher_identity(teacher.checkpoint, teacher.bf16, input_size))
    indices = range(rank, len(dataset), world_size)
    device_type = next(teacher.model.parameters()).device.type
    for index in tqdm(indices, desc="teacher cache", unit="img", disable=not sys.stderr.isatty() or rank != 0):
        path = dataset.teacher_cache_path(index)
        if path.exists():
            reused += 1
            continue
        try:
            rgb = dataset.load(index)[0]
        except DataError as err:
            if not dataset.skip_bad_samples:
                raise
            skipped.append(str(err))
            logger.warning("teacher cache: skipping bad sample: %s", err)
            continue
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=teacher.bf16):
            depth = teacher.model.infer_image(np.ascontiguousarray(rgb[..., ::-1]), input_size)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            np.save(f, depth.astype(np.float32))
        os.replace(tmp, path)
        computed += 1
        if (computed + reused) % 500 == 0:
            logger.info("teacher cache: %d of %d images done", computed + reused, len(indices))
    return computed, reused, skipped
