"""Depth metrics: hand-computed values, skipping of empty images, sums that merge across shards and processes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import util.metric
from dataset.io import DataError
from dataset.protocol import eval_crop_mask
from util.metric import LOWER_IS_BETTER, METRIC_NAMES, MetricAccumulator, depth_metric_sums

# One 2x2 image whose ratios max(p/g, g/p) are 1.2, 1.5, 1.9 and 2.5 (the third pixel under-predicts).
TARGET = [[1.0, 2.0], [3.8, 4.0]]
PRED = [[1.2, 3.0], [2.0, 10.0]]
LOG_DIFFS = [math.log(1.2), math.log(1.5), -math.log(1.9), math.log(2.5)]
EXPECTED = {
    "d1": 1 / 4,
    "d2": 2 / 4,
    "d3": 3 / 4,
    "abs_rel": (0.2 / 1 + 1.0 / 2 + 1.8 / 3.8 + 6.0 / 4) / 4,
    "sq_rel": (0.04 / 1 + 1.0 / 2 + 3.24 / 3.8 + 36.0 / 4) / 4,
    "rmse": math.sqrt((0.04 + 1.0 + 3.24 + 36.0) / 4),
    "rmse_log": math.sqrt(sum(d * d for d in LOG_DIFFS) / 4),
    "log10": sum(abs(d) for d in LOG_DIFFS) / 4 / math.log(10),
    "silog": math.sqrt(sum(d * d for d in LOG_DIFFS) / 4 - 0.5 * (sum(LOG_DIFFS) / 4) ** 2),
}


@pytest.fixture(autouse=True)
def count_tiny_images(monkeypatch):
    """The hand-computed cases use 2x2 images; the official rule of 10 valid pixels per counted image is tested on
    its own (tests/test_run_integrity.py), so here every image with a valid pixel counts."""
    monkeypatch.setattr(util.metric, "MIN_VALID_PIXELS", 1)


def metrics_of(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    accumulator = MetricAccumulator()
    accumulator.update(pred, target, valid)
    return accumulator.compute()


def test_names_and_directions() -> None:
    assert METRIC_NAMES == ("d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")
    assert LOWER_IS_BETTER == set(METRIC_NAMES) - {"d1", "d2", "d3"}


def test_hand_computed_metrics() -> None:
    pred, target = torch.tensor([PRED]), torch.tensor([TARGET])
    results = metrics_of(pred, target, torch.ones(1, 2, 2, dtype=torch.bool))
    assert list(results) == list(METRIC_NAMES)
    for name, value in EXPECTED.items():
        assert results[name] == pytest.approx(value, rel=1e-6), name


def test_masked_pixels_and_invalid_targets_are_ignored() -> None:
    pred = torch.tensor([[PRED[0] + [7.0], PRED[1] + [0.0]]])
    target = torch.tensor([[TARGET[0] + [math.nan], TARGET[1] + [5.0]]])
    valid = torch.tensor([[[True, True, True], [True, True, False]]])
    results = metrics_of(pred, target, valid)
    for name, value in EXPECTED.items():
        assert results[name] == pytest.approx(value, rel=1e-6), name


def test_perfect_prediction() -> None:
    target = 0.5 + 10 * torch.rand(2, 7, 9, generator=torch.Generator().manual_seed(0))
    results = metrics_of(target.clone(), target, torch.ones(2, 7, 9, dtype=torch.bool))
    assert results["d1"] == results["d2"] == results["d3"] == 1.0
    assert all(results[name] == pytest.approx(0.0, abs=1e-12) for name in LOWER_IS_BETTER)


def test_images_without_valid_pixels_are_skipped() -> None:
    pred = torch.stack([torch.tensor(PRED), torch.full((2, 2), 9.0)])
    target = torch.stack([torch.tensor(TARGET), torch.ones(2, 2)])
    valid = torch.tensor([[[True, True], [True, True]], [[False, False], [False, False]]])
    sums = depth_metric_sums(pred, target, valid)
    assert sums["count"].item() == 1.0 and all(value.dtype == torch.float64 for value in sums.values())
    assert metrics_of(pred, target, valid)["abs_rel"] == pytest.approx(EXPECTED["abs_rel"], rel=1e-6)


def test_an_evaluation_without_any_valid_pixel_is_an_error_not_nan() -> None:
    accumulator = MetricAccumulator()
    accumulator.update(torch.ones(1, 4, 4), torch.zeros(1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(DataError, match="evaluation: no image has .* valid ground-truth pixels.*--depth-scale"):
        accumulator.compute()


def test_metrics_are_means_over_images_not_pixels() -> None:
    pred = torch.stack([torch.tensor(PRED), torch.full((2, 2), 2.0)])
    target = torch.stack([torch.tensor(TARGET), torch.ones(2, 2)])
    valid = torch.ones(2, 2, 2, dtype=torch.bool)
    valid[1, 1] = False  # the second image (abs_rel 1) has only 2 valid pixels: it still weighs one half
    assert metrics_of(pred, target, valid)["abs_rel"] == pytest.approx((EXPECTED["abs_rel"] + 1.0) / 2, rel=1e-6)


def random_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = 0.5 + 10 * torch.rand(6, 8, 10, generator=generator)
    pred = target * torch.exp(0.3 * torch.randn(6, 8, 10, generator=generator))
    valid = torch.rand(6, 8, 10, generator=generator) > 0.3
    valid[1] = False  # an empty image in the first half, so per-half means would not average to the whole
    valid[4, 2:] = False
    return pred, target, valid


def test_merging_sums_of_two_halves_gives_the_whole_batch() -> None:
    pred, target, valid = random_batch(1)
    whole = metrics_of(pred, target, valid)
    halves = MetricAccumulator()
    halves.update(pred[:3], target[:3], valid[:3])
    halves.update(pred[3:], target[3:], valid[3:])
    assert halves.sums["count"].item() == 5.0
    merged = halves.compute()
    for name in METRIC_NAMES:
        assert merged[name] == pytest.approx(whole[name], rel=1e-12, abs=1e-15), name
    first, second = metrics_of(pred[:3], target[:3], valid[:3]), metrics_of(pred[3:], target[3:], valid[3:])
    assert abs((first["abs_rel"] + second["abs_rel"]) / 2 - whole["abs_rel"]) > 1e-4


def _all_reduce_worker(rank: int, init_file: str, queue: mp.Queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    pred, target, valid = random_batch(1)
    accumulator = MetricAccumulator()
    if rank == 0:
        accumulator.update(pred[:1], target[:1], valid[:1])
    else:
        accumulator.update(pred[1:], target[1:], valid[1:])
    accumulator.all_reduce()
    queue.put((rank, accumulator.compute()))
    dist.destroy_process_group()


def test_all_reduce_across_two_processes_matches_one_process(tmp_path) -> None:
    pred, target, valid = random_batch(1)
    whole = metrics_of(pred, target, valid)
    single = MetricAccumulator()
    single.update(pred, target, valid)
    single.all_reduce()  # no process group: a no-op
    assert single.compute() == whole
    context = mp.get_context("spawn")
    queue = context.Queue()
    mp.start_processes(
        _all_reduce_worker, args=(str(tmp_path / "init"), queue), nprocs=2, start_method="spawn", join=True
    )
    results = dict(queue.get(timeout=10) for _ in range(2))
    for rank in (0, 1):
        for name in METRIC_NAMES:
            assert results[rank][name] == pytest.approx(whole[name], rel=1e-12, abs=1e-15), (rank, name)


def test_eval_crop_masks() -> None:
    nyu = eval_crop_mask(480, 640, "eigen_nyu")
    rows, cols = nyu.any(dim=1).nonzero().flatten(), nyu.any(dim=0).nonzero().flatten()
    assert (rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()) == (45, 470, 41, 600)
    assert nyu.sum().item() == (471 - 45) * (601 - 41)
    half = eval_crop_mask(240, 320, "eigen_nyu")
    assert half.sum().item() == (235 - 22) * (300 - 20)
    garg = eval_crop_mask(352, 1216, "garg")  # KITTI: rows int(0.408 H):int(0.992 H), cols int(0.036 W):int(0.964 W)
    assert garg.dtype == torch.bool and garg.shape == (352, 1216)
    assert garg.sum().item() == (349 - 143) * (1172 - 43)
    eigen = eval_crop_mask(352, 1216, "eigen")
    assert eigen.sum().item() == (321 - 117) * (1172 - 43)
    assert eval_crop_mask(70, 84, "none").all()
    with pytest.raises(ValueError, match="unknown evaluation crop 'kitti'"):
        eval_crop_mask(70, 84, "kitti")
