"""The training sampler: a deterministic weighted mixture of datasets, sliced by rank, resumable mid-epoch.

Every rank computes the same sequence of draws for an epoch and takes its slice of each step, so no draw is
shared between ranks. A draw picks a dataset by weight (stride scheduling: after t draws a dataset of share p has
been drawn t p times, within one, in an order that is random within each step), then the next sample of that
dataset's stream: a shuffle of the dataset without repeats until it is exhausted, then a new shuffle whose first
samples are not the last ones of the previous shuffle (so a step never draws a sample twice, while the dataset
holds at least 4x the draws of a step). A dataset's stream goes on across epochs and depends on the seed and the
dataset's label only, so a resumed run, or one whose mixture changed, continues each dataset where it was.
A single dataset is a mixture of one.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Augmentation seed of one draw in one epoch: independent of workers, ranks and interruptions."""
    return (seed * 1_000_003 + epoch * 7_919 + index * 104_729) % 2**31


class ResumableSampler(Sampler):
    """Yields (index into the concatenated datasets, augmentation seed) for this rank's share of each step.

    Args:
        sizes: number of training samples of each dataset (concatenated in this order).
        weights: share of the draws of each dataset (relative; default equal), > 0.
        labels: unique name of each dataset; it seeds the dataset's stream (default '0', '1', ...).
        per_rank: draws per optimizer step on one rank (batch size x accumulated micro-batches).
        world_size, rank: the processes; a step draws per_rank x world_size samples, rank r takes the r-th block.
        seed: the run's seed.
        steps_per_epoch: optimizer steps per epoch (default: the sum of the sizes divided by the draws per step).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float] | None = None,
        labels: Sequence[str] | None = None,
        per_rank: int = 1,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        steps_per_epoch: int | None = None,
    ) -> None:
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.weights = np.asarray(weights if weights is not None else [1.0] * len(sizes), dtype=np.float64)
        self.labels = list(labels) if labels is not None else [str(i) for i in range(len(sizes))]
        if not (len(self.sizes) == len(self.weights) == len(self.labels)) or not len(self.sizes):
            raise ValueError("sizes, weights and labels must be given for at least one dataset, one each")
        if (self.sizes <= 0).any() or not (self.weights > 0).all():
            raise ValueError(f"every dataset needs samples and a positive weight: sizes {sizes}, weights {weights}")
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.per_rank, self.world_size, self.rank, self.seed = per_rank, world_size, rank, seed
        self.step_draws = per_rank * world_size
        self.steps_per_epoch = steps_per_epoch or int(self.sizes.sum()) // self.step_draws
        self.epoch, self.start = 0, 0
        self._plan(0, 0, np.zeros(len(self.sizes), dtype=np.int64))

    def _plan(self, epoch: int, anchor: int, counts: np.ndarray) -> None:
        """The draws of steps [anchor, steps_per_epoch) of `epoch`, each dataset's stream continuing at `counts`."""
        self.epoch, self.anchor, self.anchor_counts = epoch, anchor, counts.copy()
        steps = max(self.steps_per_epoch - anchor, 0)
        rng = np.random.default_rng([self.seed, epoch, anchor])
        self.choices = self._schedule(steps * self.step_draws, rng).reshape(steps, self.step_draws)
        self.choices = rng.permuted(self.choices, axis=1).reshape(-1)
        self.indices = np.empty(self.choices.size, dtype=np.int64)
        for d in range(len(self.sizes)):
            where = np.flatnonzero(self.choices == d)
            self.indices[where] = self.offsets[d] + self._stream(d, counts[d], where.size)

    def _schedule(self, draws: int, rng: np.random.Generator) -> np.ndarray:
        """Dataset of each of `draws` draws: dataset d's i-th draw is due at (i + u_d) / p_d, u_d random."""
        share = self.weights / self.weights.sum()
        phase = rng.random(len(share))
        due = [(np.arange(int(np.ceil(draws * p)) + 1) + u) / p for p, u in zip(share, phase)]
        owner = np.concatenate([np.full(len(times), d) for d, times in enumerate(due)])
        order = np.argsort(np.concatenate(due), kind="stable")
        return owner[order[:draws]]

    def _stream(self, d: int, start: int, count: int) -> np.ndarray:
        """Local indices number start .. start + count - 1 of dataset d's stream (successive shuffles)."""
        n = int(self.sizes[d])
        rounds = range(start // n, (start + count - 1) // n + 1) if count else range(0)
        stream = np.concatenate([self._shuffle(d, r) for r in rounds]) if count else np.zeros(0, np.int64)
        first = start - (start // n) * n
        return stream[first : first + count]

    def _shuffle(self, d: int, round_: int) -> np.ndarray:
        """Round `round_` of dataset d's stream: a permutation whose first w entries avoid the last w of the
        previous round's (w = draws per step - 1, at most a quarter of the dataset), taking swaps from the middle
        so that the tail, which the next round avoids, stays the raw permutation's."""
        n, w = int(self.sizes[d]), min(self.step_draws - 1, int(self.sizes[d]) // 4)
        perm = self._raw(d, round_)
        if round_ == 0 or w == 0:
            return perm
        previous_tail = self._raw(d, round_ - 1)[-w:]
        clash = np.flatnonzero(np.isin(perm[:w], previous_tail))
        middle = np.arange(w, n - w)
        free = middle[~np.isin(perm[middle], previous_tail)][: clash.size]
        perm[clash], perm[free] = perm[free], perm[clash].copy()
        return perm

    def _raw(self, d: int, round_: int) -> np.ndarray:
        key = zlib.crc32(self.labels[d].encode())
        return np.random.default_rng([self.seed, key, round_]).permutation(int(self.sizes[d]))

    def set_epoch(self, epoch: int) -> None:
        """Plan `epoch` (from its first step); the streams continue from the end of the current epoch's plan when
        `epoch` follows it, else the epochs between are planned again from the start of the run."""
        if epoch == self.epoch:
            return
        if epoch == self.epoch + 1:
            self._plan(epoch, 0, self.drawn_counts(self.steps_per_epoch))
            return
        self._plan(0, 0, np.zeros(len(self.sizes), dtype=np.int64))
        while self.epoch < epoch:
            self._plan(self.epoch + 1, 0, self.drawn_counts(self.steps_per_epoch))

    def set_start(self, step: int) -> None:
        """Skip the first `step` optimizer steps of the current epoch."""
        if step < self.anchor:
            raise ValueError(f"step {step} lies before the start {self.anchor} of this epoch's plan")
        self.start = step

    def drawn_counts(self, step: int) -> np.ndarray:
        """Samples drawn from each dataset, over all ranks and epochs, after `step` steps of the current epoch."""
        if step < self.anchor:
            raise ValueError(f"step {step} lies before the start {self.anchor} of this epoch's plan")
        done = (min(step, self.steps_per_epoch) - self.anchor) * self.step_draws
        return self.anchor_counts + np.bincount(self.choices[:done], minlength=len(self.sizes))

    def drawn(self, step: int) -> dict[str, int]:
        """`drawn_counts` by label (what `data/<label>/samples` logs)."""
        return {label: int(n) for label, n in zip(self.labels, self.drawn_counts(step))}

    def __iter__(self) -> Iterator[tuple[int, int]]:
        steps = np.arange(self.start, self.steps_per_epoch)[:, None]
        positions = (steps * self.step_draws + self.rank * self.per_rank + np.arange(self.per_rank)).ravel()
        indices = self.indices[positions - self.anchor * self.step_draws]
        return iter([(int(i), sample_seed(self.seed, self.epoch, int(p))) for i, p in zip(indices, positions)])

    def __len__(self) -> int:
        return max(self.steps_per_epoch - self.start, 0) * self.per_rank

    def state_dict(self, step: int) -> dict:
        """What a checkpoint stores to continue after `step` steps of the current epoch (plain values)."""
        return {
            "epoch": self.epoch,
            "step": step,
            "labels": list(self.labels),
            "sizes": self.sizes.tolist(),
            "weights": self.weights.tolist(),
            "steps_per_epoch": self.steps_per_epoch,
            "step_draws": self.step_draws,
            "seed": self.seed,
            "anchor": self.anchor,
            "anchor_counts": self.anchor_counts.tolist(),
            "drawn": self.drawn_counts(step).tolist(),
        }

    def load_state_dict(self, state: dict) -> bool:
        """Continue from a `state_dict`. With the same datasets, weights and steps the plan is the saved one (exact
        resume, True); otherwise each dataset's stream continues from its saved count (new datasets from 0) and the
        rest of the epoch is planned with the current mixture (False)."""
        same = all(
            state[key] == value
            for key, value in (("labels", self.labels), ("sizes", self.sizes.tolist()), ("seed", self.seed),
                               ("weights", self.weights.tolist()), ("steps_per_epoch", self.steps_per_epoch),
                               ("step_draws", self.step_draws))
        )  # fmt: skip
        step = min(state["step"], self.steps_per_epoch)
        if same:
            self._plan(state["epoch"], state["anchor"], np.asarray(state["anchor_counts"], dtype=np.int64))
        else:
            saved = dict(zip(state["labels"], state["drawn"]))
            counts = np.array([saved.get(label, 0) for label in self.labels], dtype=np.int64)
            self._plan(state["epoch"], step, counts)
        self.set_start(step)
        return same
