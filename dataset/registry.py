"""The one place where `--dataset` names are resolved: the named datasets and the file lists of every dataset.

`--dataset NAME` of a named dataset (hypersim, vkitti2, kitti, nyu) reads the lists `python -m dataset.prepare
NAME` wrote, from `<--data-root>/splits/` or `dataset/splits/NAME/`, with the dataset's own depth reader and
evaluation protocol. Any other NAME means `dataset/splits/NAME/{train,val}.txt`, and a FOLDER means
`FOLDER/splits/` (or the lists directly in FOLDER): a new dataset in the generic layout needs no code.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import numpy as np

from .adapters import hypersim, kitti, nyu, vkitti2
from .generic_with_intrinsics import GenericDatasetWithIntrinsics
from .io import DataError, first_existing_file
from .protocol import NamedDataset

logger = logging.getLogger(__name__)

SPLITS_DIR = Path(__file__).parent / "splits"
NAMED_DATASETS: dict[str, NamedDataset] = {a.DATASET.name: a.DATASET for a in (hypersim, vkitti2, kitti, nyu)}
# Evaluation samples keep every measured pixel (> 0); the protocol's range is applied by the evaluation.
_SMALLEST_DEPTH = float(np.finfo(np.float32).tiny)


def resolve_split(dataset: str, split: str, root: str | Path | None = None) -> Path:
    """The file list of `split` ('train' | 'val' | 'test') for a dataset name or folder.

    Named datasets: `root/splits/<split>.txt`, then `dataset/splits/<name>/<split>.txt`. Other names:
    `dataset/splits/<name>/<split>.txt`; folders: `FOLDER/splits/<split>.txt`, then `FOLDER/<split>.txt`.
    A DataError lists every path tried and the command that writes the list, or says that `dataset` is neither a
    folder nor a known name (with the closest ones).
    """
    if dataset in NAMED_DATASETS:
        candidates = [
            *([Path(root) / "splits" / f"{split}.txt"] if root else []),
            SPLITS_DIR / dataset / f"{split}.txt",
        ]
        how = f"python -m dataset.prepare {dataset} --root {root or 'DIR'} --out {SPLITS_DIR / dataset}"
    elif Path(dataset).is_dir():
        candidates = [Path(dataset) / "splits" / f"{split}.txt", Path(dataset) / f"{split}.txt"]
        how = f"python -m dataset.make_filelist --images DIR --depths DIR [--intrinsics DIR] --out {dataset}/splits"
    elif (SPLITS_DIR / dataset).is_dir():
        candidates = [SPLITS_DIR / dataset / f"{split}.txt"]
        how = (
            f"python -m dataset.make_filelist --images DIR --depths DIR [--intrinsics DIR] --out {candidates[0].parent}"
        )
    else:
        raise DataError(unknown_dataset(dataset))
    return first_existing_file(candidates, f"'{split}' split for dataset {dataset!r}", f"create it with `{how}`")


def unknown_dataset(name: str) -> str:
    """The message for a --dataset that is no folder and no dataset name, with the closest names and folders."""
    known = sorted([*NAMED_DATASETS, *(p.name for p in SPLITS_DIR.iterdir() if p.is_dir())])
    path = Path(name).expanduser()
    parent = path.parent if path.parent.is_dir() else None
    folders = [p for p in parent.iterdir() if (p / "splits").is_dir() or (p / "train.txt").is_file()] if parent else []
    candidates = known + [str(folder) for folder in folders]
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    guess = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"--dataset {name}: no such folder, and no dataset of that name ({guess}known names: {', '.join(known)}); "
        "give a folder holding splits/train.txt and splits/val.txt, or a name under dataset/splits/"
    )


def build_dataset(
    name: str,
    split: str,
    size: tuple[int, int],
    mode: str | None = None,
    root: str | Path | None = None,
    max_depth: float | None = None,
    **kwargs,
) -> GenericDatasetWithIntrinsics:
    """The dataset for `name` (a named dataset, a name under dataset/splits/, or a folder) and `split`.

    Args:
        name: dataset name or folder.
        split: 'train' | 'val' | another list name.
        size: training crop (height, width) / evaluation lower bound, pixels.
        mode: 'train' or 'val' (default: 'train' for the train split, else 'val').
        root: data root; required by named datasets, whose list paths are relative to it.
        max_depth: training ground truth beyond this (metres) is invalid (default: a named dataset's usual
            range, else unbounded). In 'val' mode a named dataset keeps every measured pixel: its evaluation
            range is its protocol's.
        kwargs: passed to GenericDatasetWithIntrinsics (a named dataset's `depth_scale` is ignored: its reader
            decodes its own units).
    """
    mode = mode or ("train" if split == "train" else "val")
    if name not in NAMED_DATASETS:
        if max_depth is not None:
            kwargs["max_depth"] = max_depth
        return GenericDatasetWithIntrinsics(resolve_split(name, split), mode=mode, size=size, root=root, **kwargs)
    named = NAMED_DATASETS[name]
    if root is None:
        raise DataError(f"{name}: --data-root DIR is required (the folder given to `python -m dataset.prepare {name}`)")
    if not Path(root).is_dir():
        raise DataError(f"{name}: data root {root} is not a folder")
    max_depth = named.max_depth if max_depth is None else max_depth
    if mode == "val":
        kwargs["min_depth"], max_depth = _SMALLEST_DEPTH, np.inf
    elif max_depth < named.max_depth:
        logger.warning(
            "%s: --max-depth %g m is below the usual %g m for this dataset; deeper ground truth is ignored in training",
            name,
            max_depth,
            named.max_depth,
        )
    kwargs.pop("depth_scale", None)
    return GenericDatasetWithIntrinsics(
        resolve_split(name, split, root),
        mode=mode,
        size=size,
        max_depth=max_depth,
        depth_reader=named.read_depth,
        eval_protocol=named.protocol,
        root=root,
        **kwargs,
    )
