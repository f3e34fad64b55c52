"""The training sampler (util/sampler.py): weighted mixtures, streams without repeats, ranks, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from util.sampler import ResumableSampler


def draws(sampler: ResumableSampler) -> list[int]:
    return [index for index, _ in sampler]


def test_weights_are_shares_of_the_draws_whatever_the_sizes():
    sampler = ResumableSampler([30, 300], [3, 1], ["small", "large"], per_rank=2, steps_per_epoch=12)
    assert sampler.drawn(12) == {"small": 18, "large": 6}
    assert len(sampler) == 24
    sources = np.array([index >= 30 for index in draws(sampler)])
    assert sources.sum() == 6
    # After any number of steps each dataset is within one draw of its share.
    big = ResumableSampler([1000, 50, 200], [1, 2, 1], ["a", "b", "c"], per_rank=4, world_size=2)
    assert big.steps_per_epoch == 1250 // 8
    for step in range(0, big.steps_per_epoch + 1, 7):
        counts = np.array(list(big.drawn(step).values()))
        assert np.abs(counts - step * 8 * np.array([0.25, 0.5, 0.25])).max() <= 1.0


def test_each_dataset_is_drawn_without_repeats_until_exhausted_then_reshuffled():
    sizes = [7, 40]
    sampler = ResumableSampler(sizes, [1, 1], ["a", "b"], per_rank=3, steps_per_epoch=30)
    stream = {0: [], 1: []}
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for index in draws(sampler):
            stream[int(index >= 7)].append(index)
    for d, n in enumerate(sizes):
        rounds = [stream[d][i : i + n] for i in range(0, len(stream[d]) - n + 1, n)]
        assert len(rounds) >= 2
        assert all(sorted(r) == list(range(7 * d, 7 * d + n)) for r in rounds), d
        assert rounds[0] != rounds[1]  # reshuffled


def test_ranks_split_each_step_and_never_share_a_sample_in_a_step():
    sizes, weights = [12, 14], [2, 1]
    one = ResumableSampler(sizes, weights, ["a", "b"], per_rank=4, world_size=1, steps_per_epoch=20)
    ranks = [ResumableSampler(sizes, weights, ["a", "b"], per_rank=2, world_size=2, rank=r, steps_per_epoch=20)
             for r in range(2)]  # fmt: skip
    single = np.array(draws(one)).reshape(20, 4)
    split = [np.array(draws(r)).reshape(20, 2) for r in ranks]
    np.testing.assert_array_equal(np.concatenate(split, axis=1), single)
    # Dataset a (12 samples) is reshuffled every few steps, 40 times here: still no repeat inside a step.
    for seed in range(8):
        sampler = ResumableSampler(sizes, weights, ["a", "b"], per_rank=4, seed=seed, steps_per_epoch=20)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            assert all(len(set(step)) == 4 for step in np.array(draws(sampler)).reshape(20, 4).tolist())


def test_order_is_a_function_of_seed_and_epoch():
    def epoch_draws(seed: int, epoch: int) -> list[int]:
        sampler = ResumableSampler([20, 20], [1, 1], ["a", "b"], per_rank=2, seed=seed)
        sampler.set_epoch(epoch)
        return draws(sampler)

    assert epoch_draws(0, 1) == epoch_draws(0, 1)
    assert epoch_draws(0, 1) != epoch_draws(0, 2)
    assert epoch_draws(0, 1) != epoch_draws(1, 1)
    sampler = ResumableSampler([20, 20], [1, 1], ["a", "b"], per_rank=2)
    sampler.set_epoch(3)
    sampler.set_epoch(1)  # planned again from the start of the run
    assert draws(sampler) == epoch_draws(0, 1)


def test_a_single_dataset_is_a_mixture_of_one_and_an_epoch_is_one_pass():
    sampler = ResumableSampler([12], per_rank=2, world_size=2)
    assert sampler.steps_per_epoch == 3 and len(sampler) == 6
    full = ResumableSampler([12], per_rank=4)
    assert sorted(draws(full)) == list(range(12))
    assert ResumableSampler([12, 8], per_rank=4).steps_per_epoch == 5
    assert ResumableSampler([12, 8], per_rank=4, steps_per_epoch=2).steps_per_epoch == 2


def test_state_restores_the_rest_of_the_epoch_and_the_next_ones_exactly():
    args = dict(sizes=[11, 30], weights=[1, 3], labels=["a", "b"], per_rank=2, world_size=2, rank=1, seed=4)
    straight = ResumableSampler(**args)
    straight.set_epoch(2)
    expected = draws(straight)
    straight.set_epoch(3)
    expected_next = draws(straight)

    before = ResumableSampler(**args)
    before.set_epoch(2)
    state = before.state_dict(step=4)
    after = ResumableSampler(**args)
    assert after.load_state_dict(state)
    assert draws(after) == expected[4 * 2 :]
    assert after.drawn(4) == before.drawn(4)
    after.set_epoch(3)
    after.set_start(0)
    assert draws(after) == expected_next
    with pytest.raises(ValueError, match="before the start"):
        after.set_start(-1)


def test_a_changed_mixture_continues_each_datasets_stream():
    old = ResumableSampler([10, 10], [1, 1], ["a", "b"], per_rank=2, steps_per_epoch=10)
    state = old.state_dict(step=5)
    new = ResumableSampler([10, 10, 10], [1, 1, 2], ["a", "b", "c"], per_rank=2, steps_per_epoch=10)
    assert not new.load_state_dict(state)
    assert new.drawn(5) == {**old.drawn(5), "c": 0}
    assert len(new) == 10
    rest = draws(new)
    a_old = [i for i in draws(old)[:10] if i < 10]
    a_new = [i for i in rest if i < 10]
    assert not set(a_old) & set(a_new[: 10 - len(a_old)])  # a's first shuffle goes on without repeats
    assert new.drawn(10)["c"] == pytest.approx(5, abs=1)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="positive weight"):
        ResumableSampler([3, 4], [1, 0])
    with pytest.raises(ValueError, match="one each"):
        ResumableSampler([3, 4], [1])
