"""Data library: readers, K-preserving transforms, the generic file-list dataset and synthetic scenes.

from dataset import GenericDatasetWithIntrinsics          # also: from dataset.generic_with_intrinsics import ...
from dataset.registry import build_dataset                # --dataset names, named datasets (dataset/adapters/)
from dataset.check import check_dataset                   # the start-up check: sizes, depth units and range
"""

from .filelist import parse_filelist
from .generic_with_intrinsics import GenericDatasetWithIntrinsics, seed_worker
from .io import DataError

__all__ = ["DataError", "GenericDatasetWithIntrinsics", "parse_filelist", "seed_worker"]
