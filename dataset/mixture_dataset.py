"""The training datasets of a mixture as one index space, for one DataLoader and `util.sampler.ResumableSampler`.

It also offers what the teacher cache pass reads of a dataset (`teacher_cache`, `teacher_cache_path`, `load`,
`skip_bad_samples`), so that one pass fills the cache for every dataset: a cached prediction is named by its image
(path, size, modification time), never by its dataset, so the keys stay right across datasets.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from .generic_with_intrinsics import GenericDatasetWithIntrinsics


class MixtureDataset(Dataset):
    """Datasets concatenated in order: index `offset of dataset d + i` is sample i of dataset d.

    Args:
        datasets: {label: dataset}, in the mixture's order.

    Samples are those of the datasets (indexed with (index, seed) for exact augmentation) with `source`, the
    dataset's position in the mixture, added.
    """

    def __init__(self, datasets: dict[str, GenericDatasetWithIntrinsics]) -> None:
        self.datasets = list(datasets.values())
        self.offsets = [0, *np.cumsum([len(d) for d in self.datasets]).tolist()]

    def __len__(self) -> int:
        return self.offsets[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """(dataset position, index in that dataset) of a concatenated index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is outside the mixture's {len(self)} samples")
        d = bisect.bisect_right(self.offsets, index) - 1
        return d, index - self.offsets[d]

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, seed = item if isinstance(item, tuple) else (item, None)
        d, local = self.locate(index)
        sample = self.datasets[d][(local, seed)]
        sample["source"] = d
        return sample

    @property
    def teacher_cache(self) -> Path | None:
        """The teacher cache folder, the same for every dataset of a run (None: no cache)."""
        return self.datasets[0].teacher_cache

    @property
    def skip_bad_samples(self) -> bool:
        return self.datasets[0].skip_bad_samples

    def teacher_cache_path(self, index: int) -> Path:
        d, local = self.locate(index)
        return self.datasets[d].teacher_cache_path(local)

    def load(self, index: int):
        """(RGB image, depth in metres, K or None) of a concatenated index (see GenericDatasetWithIntrinsics.load)."""
        d, local = self.locate(index)
        return self.datasets[d].load(local)
