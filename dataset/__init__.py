"""Datasets: the generic file-list format, and the one place where dataset names are resolved.

`--dataset NAME` means `dataset/splits/NAME/{train,val}.txt`; `--dataset FOLDER` means `FOLDER/splits/` (or
the lists directly in FOLDER). A new dataset in the generic layout therefore needs no code.
"""

from __future__ import annotations

from pathlib import Path

from . import hypersim, kitti, nyu, vkitti2
from .base import GenericDatasetWithIntrinsics, parse_filelist, seed_worker
from .io import DataError, first_existing_file

SPLITS_DIR = Path(__file__).parent / "splits"


def resolve_split(dataset: str, split: str) -> Path:
    """The file list of `split` ('train' | 'val' | ...) for a dataset name or folder; DataError lists what was tried."""
    candidates = [SPLITS_DIR / dataset / f"{split}.txt"]
    folder = Path(dataset)
    if folder.is_dir():
        candidates = [folder / "splits" / f"{split}.txt", folder / f"{split}.txt"]
    return first_existing_file(
        candidates,
        f"'{split}' split for dataset {dataset!r}",
        f"create it with `python -m dataset.make_filelist --images DIR --depths DIR [--intrinsics DIR] "
        f"--out {SPLITS_DIR / dataset}`",
    )


# Named datasets with their own decoding and cameras: name -> builder(split, size, mode, root, **kwargs). Each
# returns a GenericDatasetWithIntrinsics whose `eval_defaults` ({'eval_crop', 'eval_min_depth', 'eval_max_depth'})
# train.py applies when the user gives no evaluation flags.
NAMED_DATASETS: dict = {adapter.NAME: adapter.build for adapter in (hypersim, vkitti2, kitti, nyu)}


def build_dataset(
    name: str, split: str, size: tuple[int, int], mode: str | None = None, root: str | None = None, **kwargs
) -> GenericDatasetWithIntrinsics:
    """The dataset for `name` (a named dataset, a name under dataset/splits/, or a folder) and `split`.

    Args:
        name: dataset name or folder.
        split: 'train' | 'val' | another list name.
        size: training crop (height, width) / evaluation lower bound.
        mode: 'train' or 'val' (default: 'train' for the train split, else 'val').
        root: data root of a named dataset (relative list paths resolve against it first).
        kwargs: passed to GenericDatasetWithIntrinsics.
    """
    mode = mode or ("train" if split == "train" else "val")
    if name in NAMED_DATASETS:
        return NAMED_DATASETS[name](split, size, mode, root, **kwargs)
    return GenericDatasetWithIntrinsics(resolve_split(name, split), mode=mode, size=size, root=root, **kwargs)


__all__ = [
    "DataError",
    "GenericDatasetWithIntrinsics",
    "build_dataset",
    "parse_filelist",
    "resolve_split",
    "seed_worker",
]
