"""The quick start's verdict: a collapsed model or one no better than the constant predictor stops it with status 1
and a message naming why (the whole demo runs in tests/test_readme.py)."""

from __future__ import annotations

import json

import pytest

import demo


def write_run(folder, spreads, abs_rel, saturated=0.0, warmup_iters=80, clip_grad=1.0):
    """A run folder (from random weights, lr 1e-4) whose metrics.jsonl logs one training step per spread, then
    one evaluation."""
    folder.mkdir()
    config = {"pretrained_from": None, "lr": 1e-4, "warmup_iters": warmup_iters, "clip_grad": clip_grad}
    (folder / "config.json").write_text(json.dumps(config))
    events = [
        {"step": i, "train/pred_spread": s, "train/pred_saturated": saturated, "train/lr_head": 1e-3}
        for i, s in enumerate(spreads)
    ]
    events.append({"step": len(spreads), "eval/abs_rel": abs_rel, "eval/d1": 0.5})
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return folder


def test_a_collapsed_run_stops_the_demo_naming_the_collapse(tmp_path):
    run = write_run(tmp_path / "teacher", [0.2, 0.2, 0.001, 0.001, 0.001, 0.001, 0.001], abs_rel=0.3)
    with pytest.raises(SystemExit) as stop:
        demo.judge("teacher", run, constant_abs_rel=0.4)
    assert "FAILED: the teacher collapsed" in str(stop.value) and "depth varies by only" in str(stop.value)
    # The fixes it names are those the run lacks: it had a warm-up and clipping; random weights start flat anyway.
    assert "a lower --lr (now 0.0001)" in str(stop.value) and "--warmup-iters" not in str(stop.value)
    assert "--clip-grad" not in str(stop.value) and "starting weights" not in str(stop.value)
    bare = write_run(tmp_path / "bare", [0.001] * 6, abs_rel=0.3, warmup_iters=0, clip_grad=0.0)
    assert "--warmup-iters 100" in demo.collapse_of(bare) and "--clip-grad 1.0" in demo.collapse_of(bare)


def test_a_saturated_run_is_a_collapse_too(tmp_path):
    run = write_run(tmp_path / "student", [0.3] * 6, abs_rel=0.3, saturated=1.0)
    with pytest.raises(SystemExit, match="the student collapsed.*head's limit"):
        demo.judge("student", run, constant_abs_rel=0.4)


def test_a_run_that_recovered_from_a_collapse_is_judged_by_its_evaluation(tmp_path):
    run = write_run(tmp_path / "teacher", [0.001] * 6 + [0.2] * 2, abs_rel=0.3)
    assert demo.collapse_of(run) is None
    demo.judge("teacher", run, constant_abs_rel=0.4)


def test_a_model_no_better_than_the_constant_stops_the_demo(tmp_path):
    run = write_run(tmp_path / "teacher", [0.2] * 6, abs_rel=0.41)
    with pytest.raises(SystemExit, match=r"does not beat the constant predictor .*abs_rel 0\.410 against 0\.400"):
        demo.judge("teacher", run, constant_abs_rel=0.4)
