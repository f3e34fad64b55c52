"""The single-camera focal experiment (experiments/focal_experiment.py) end to end at its smallest setting."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from helpers import ROOT, SUBPROCESS_ENV

from dataset.synthetic import write_synthetic_dataset

MODELS = ("constant", "A", "B", "C", "D")
LABELS = ("constant: median training depth", "A: no camera", "B: camera, no zoom", "C: camera + zoom", "D: camera")
BIN_KEYS = ("abs_rel", "d1", "median_scale", "zoom_slope", "focal_ratio", "n_images")


def run_smoke(tmp_path, out: str, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "experiments" / "focal_experiment.py"), "--scale", "smoke",
               "--work", str(tmp_path / "work"), "--out", str(tmp_path / out), *extra]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_smoke_setting_writes_every_model_bin_and_seed(tmp_path):
    # Stand-in for real_rgbd/: calibrated frames of other cameras in the same layout.
    real = write_synthetic_dataset(tmp_path / "real", 0, 3, (70, 56), val_hfov_range=(30, 100), seed=7)
    run_smoke(tmp_path, "out", "--real", str(real))
    record = json.loads((tmp_path / "out" / "single_camera_smoke.json").read_text())
    assert record["complete"] and record["seeds"] == [0] and len(record["bins"]) == 7
    assert [b["lo"] for b in record["bins"][1:]] == [b["hi"] for b in record["bins"][:-1]]
    assert math.isclose(record["bins"][0]["lo"], 0.404, abs_tol=0.01)
    assert math.isclose(record["bins"][-1]["hi"], 2.60, abs_tol=0.01)
    results = record["seed_runs"]["0"]["results"]
    assert set(results) == set(MODELS) and set(record["summary"]) == set(MODELS)
    for model in MODELS:
        assert len(results[model]["bins"]) == 7
        for focal_bin, edges in zip(results[model]["bins"], record["bins"]):
            assert all(math.isfinite(focal_bin[key]) for key in BIN_KEYS), (model, focal_bin)
            assert focal_bin["n_images"] == 2
            assert edges["lo"] - 1e-6 <= focal_bin["focal_ratio"] <= edges["hi"] + 1e-6
        assert math.isfinite(results[model]["all"]["scale_slope"])
    assert all(b["zoom_slope"] == 0 for b in results["constant"]["bins"])
    assert record["seed_runs"]["0"]["curve"]["eval"] and record["seed_runs"]["0"]["curve"]["train"]
    real_runs = record["seed_runs"]["0"]["real"]
    assert set(real_runs) == {"A", "C"} and all(len(cameras) >= 1 for cameras in real_runs.values())
    assert record["real_summary"]["cameras"]
    assert {t["model"] for t in record["seed_runs"]["0"]["timing"]} == {"A", "B", "C", "D", "evaluation"}
    text = (tmp_path / "out" / "single_camera_smoke.md").read_text()
    for needle in (*LABELS, *(b["label"] for b in record["bins"]), "Expectations", "Real frames", "training curve"):
        assert needle in text, needle
    for suffix in (".png", "_example.png"):
        assert (tmp_path / "out" / f"single_camera_smoke{suffix}").stat().st_size > 1000

    # A rerun reuses the finished runs of the same commands and writes the results again.
    again = run_smoke(tmp_path, "again")
    assert again.stdout.count("reusing the finished run") == 4
    rerun = json.loads((tmp_path / "again" / "single_camera_smoke.json").read_text())
    assert rerun["seed_runs"]["0"]["results"]["C"]["all"] == results["C"]["all"]


def test_a_killed_experiment_resumes_its_unfinished_run_of_the_same_command_only(tmp_path):
    from experiments.focal_jobs import Job

    job = Job(seed=0, key="A", args=["--epochs", "3"], save=tmp_path / "A", steps=30)
    assert not job.resumable()  # nothing there yet
    job.save.mkdir()
    job.checkpoint.write_bytes(b"checkpoint")
    assert not job.resumable()  # a latest.pth of unknown origin is started again, never continued
    job.started.write_text(json.dumps({"command": job.command[1:]}))
    assert job.resumable()
    other = Job(seed=0, key="A", args=["--epochs", "4"], save=tmp_path / "A", steps=40)
    assert not other.resumable()  # another command: started again with --overwrite
