"""The training sampler: one shard per rank, reshuffled per epoch, resumable mid-epoch with the same augmentations."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Dataset, DistributedSampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Augmentation seed of one sample in one epoch: independent of workers, ranks and interruptions."""
    return (seed * 1_000_003 + epoch * 7_919 + index * 104_729) % 2**31


class ResumableSampler(DistributedSampler):
    """DistributedSampler (set_epoch shuffling, one shard per rank) that yields (index, augmentation seed)
    pairs and can start mid-epoch, so a resumed run sees exactly the samples and augmentations it would
    have seen."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first `start` samples of this rank's shard in the current epoch."""
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())[self.start :]
        return iter([(i, sample_seed(self.seed, self.epoch, i)) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start
