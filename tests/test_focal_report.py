"""The report of the single-camera experiment (experiments/focal_report.py) on a tiny fake results record: the
in-range zoom slope keeps exactly the test images whose two views lie in the training zoom range, the issue's
expectation is checked on all images and on those, and the report is rebuilt from a results .json alone."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT

from experiments.focal_report import expectations, in_range, markdown, rebuild, summarise

# Ratios r of the fake test images (two bins) and which ones the range 0.4-2.5 with a 2x zoom keeps: r itself and
# 2r inside [0.4, 2.5], i.e. 0.4 <= r <= 1.25. 0.3 is out (its own view is below the range although 2r = 0.6 is in),
# 1.25 is the last one in (2r = 2.5), 1.26 and 2.0 are out (2r beyond 2.5).
RATIOS = ([0.3, 0.45, 1.0], [1.25, 1.26, 2.0])
KEEP = ([False, True, True], [True, False, False])
BINS = [{"lo": 0.25, "hi": 1.1, "label": "0.25-1.10", "centre": math.sqrt(0.25 * 1.1)},
        {"lo": 1.1, "hi": 2.1, "label": "1.10-2.10", "centre": math.sqrt(1.1 * 2.1)}]  # fmt: skip


def fake_result(slopes: tuple[list[float], list[float]], scale: float = 1.0) -> dict:
    """A model's results of one seed in the layout of focal_eval.evaluate_bins, with the given zoom slopes."""
    bins = []
    for ratios, bin_slopes in zip(RATIOS, slopes):
        per_image = {"focal_ratio": ratios, "median_scale": [scale] * len(ratios), "zoom_slope": bin_slopes}
        finite = [s for s in bin_slopes if math.isfinite(s)]
        bins.append({"abs_rel": 0.2 * scale, "d1": 0.8, "median_scale": scale, "zoom_slope": float(np.mean(finite)),
                     "n_images": len(ratios), "per_image": per_image})  # fmt: skip
    everything = [s for b in slopes for s in b if math.isfinite(s)]
    return {"bins": bins, "all": {"abs_rel": 0.2 * scale, "d1": 0.8, "median_scale": scale,
                                  "zoom_slope": float(np.mean(everything)), "scale_slope": 0.0}}  # fmt: skip


def fake_record(c_slopes: list) -> dict:
    """Two seeds of constant, A and C; C's zoom slopes per seed are `c_slopes`."""
    flat = [-0.8, -0.8, -0.8]
    runs = {}
    for seed, slopes in enumerate(c_slopes):
        results = {"constant": fake_result(([0.0] * 3, [0.0] * 3), 2.0), "A": fake_result((flat, flat), 1.5),
                   "C": fake_result(slopes, 0.5)}  # fmt: skip
        timing = [{"seed": seed, "model": "A", "steps": 10, "wall_s": 60.0, "cpu_s": 50.0}]
        runs[str(seed)] = {"results": results, "curve": {"train": [[1, 0.5, 0.1]], "eval": [[10, 0.3, 0.6, -0.5]]},
                           "real": {}, "timing": timing}  # fmt: skip
    return {"name": "fake", "command": "python experiments/focal_experiment.py --scale smoke", "scale": "smoke",
            "design": {"train_hfov_deg": 60.0, "test_hfov_deg": [25.0, 110.0], "zoom_range": [0.4, 2.5],
                       "slope_zoom": 2.0}, "bins": BINS, "backbones": ["trained"], "seed_runs": runs,
            "complete": True, "minutes": 1.0, "load_average_start": [0.1, 0.1, 0.1],
            "load_average_end": [1.0, 1.0, 1.0]}  # fmt: skip


# C's slopes: the kept images have small slopes (their mean is 0.1 on seed 0 and 0.0 on seed 1), every other image a
# large negative one, and a NaN (a zoom slope that could not be measured) in range is skipped.
C_SLOPES = [([-5.0, 0.2, 0.0], [0.1, -1.0, -2.0]), ([-5.0, -0.1, float("nan")], [0.1, -1.0, -2.0])]


def test_in_range_keeps_both_views_inside_the_training_zoom_range():
    for ratios, keep in zip(RATIOS, KEEP):
        assert in_range(ratios, 2.0, (0.4, 2.5)).tolist() == keep
    assert in_range([0.3, 0.5, 1.0], 1.0, (0.4, 2.5)).tolist() == [False, True, True]  # z = 1: the range itself


def test_summary_has_the_in_range_slope_of_exactly_the_kept_images():
    summary = summarise(fake_record(C_SLOPES))
    c = summary["C"]["all"]
    assert c["zoom_slope_in_range"]["values"] == pytest.approx([0.1, 0.0])
    assert c["zoom_slope_in_range"]["mean"] == pytest.approx(0.05)
    assert c["zoom_slope_in_range"]["spread"] == pytest.approx(0.1)
    assert c["n_in_range"]["values"] == [3, 2]  # the NaN of seed 1 is not counted
    assert summary["A"]["all"]["zoom_slope_in_range"]["mean"] == pytest.approx(-0.8)
    assert c["zoom_slope"]["mean"] < -1  # the all-images slope is unchanged: it holds the extrapolating images


def test_expectation_is_checked_on_all_images_and_in_range_and_the_report_shows_both():
    record = fake_record(C_SLOPES)
    summary = summarise(record)
    checks = {text: ok for text, ok, _ in expectations(summary, ["trained"])}
    assert checks["C: |zoom slope| <= 0.15, all test images"] is False
    assert checks["C: |zoom slope| <= 0.15, in-range test images only"] is True
    text = markdown(record, summary, expectations(summary, ["trained"]), {})
    assert "| zoom slope | zoom slope, in range | scale slope |" in text
    assert "for r > 1.25 that lies beyond the largest training zoom 2.5" in text
    assert "3, 3 of 6, 6 images per seed" in text
    assert "all test images: NO" in text and "in-range test images only: yes" in text
    assert "| ratio of the 2x zoomed view | 0.50-2.20 | 2.20-4.20 |" in text


def test_older_results_without_the_zoom_settings_take_the_experiments(tmp_path):
    record = fake_record(C_SLOPES)
    del record["design"]["zoom_range"], record["design"]["slope_zoom"]
    assert summarise(record)["C"]["all"]["zoom_slope_in_range"]["values"] == pytest.approx([0.1, 0.0])


def test_the_report_is_rebuilt_from_a_results_json_by_the_script(tmp_path):
    source = tmp_path / "fake.json"
    source.write_text(json.dumps({**fake_record(C_SLOPES), "summary": {"stale": 1}, "expectations": []}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the script finds the repository itself
    result = subprocess.run([sys.executable, str(ROOT / "experiments" / "focal_report.py"), str(source), "--out",
                             str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rebuilt = json.loads((tmp_path / "out" / "fake.json").read_text())
    assert set(rebuilt["summary"]) == {"constant", "A", "C"}
    assert rebuilt["seed_runs"] == json.loads(source.read_text())["seed_runs"]
    assert "zoom slope, in range" in (tmp_path / "out" / "fake.md").read_text()
    assert (tmp_path / "out" / "fake.png").stat().st_size > 1000
    # In place (no --out): the .json is rewritten next to its .md and .png.
    paths = rebuild(source)
    assert [p.name for p in paths] == ["fake.json", "fake.md", "fake.png"]
    assert "stale" not in json.loads(source.read_text())["summary"]
