"""The GPU check (benchmarks/gpu_check.py): its smoke run on the machine at hand writes every section, measured or
skipped with a reason; bad flags are refused; the peak table, the section budget and the goals."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest
import torch
from helpers import ROOT, SUBPROCESS_ENV

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402
import gpu_report  # noqa: E402
import gpu_sections  # noqa: E402

# One thread: on a small shared machine two OpenMP threads can wait on each other for many times the work.
SMOKE_ENV = {**SUBPROCESS_ENV, "OMP_NUM_THREADS": "1"}


def run_check(*flags: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), *flags]
    return subprocess.run(argv, cwd=ROOT, env=SMOKE_ENV, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpu_check")
    done = run_check("--smoke", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "gpu_results.json").read_text()), (out / "gpu_results.md").read_text()


def test_smoke_run_has_every_section_measured_or_skipped_with_a_reason(smoke):
    report, text = smoke
    assert list(report["sections"]) == list(gpu_sections.SECTIONS)
    for name, section in report["sections"].items():
        assert section["status"] in ("measured", "skipped"), (name, section.get("traceback"))
        assert section["status"] == "measured" or section["reason"], name
        assert f"## {name}" in text
        for row in section["rows"]:
            assert row["status"] in ("measured", "skipped"), (name, row)
            assert row["status"] == "measured" or row["reason"], (name, row)
    cuda = torch.cuda.is_available()
    expected = {"compiled": cuda, "graphs": cuda}
    assert {n: s["status"] == "measured" for n, s in report["sections"].items()} == {
        n: expected.get(n, True) for n in gpu_sections.SECTIONS
    }
    assert report["meta"]["encoder"] == "vits" and report["meta"]["torch"] == torch.__version__


def test_smoke_numbers_are_finite_and_complete(smoke):
    report, _ = smoke
    sections = {name: s["rows"] for name, s in report["sections"].items()}
    accuracy = sections["accuracy"]
    assert [r["precision"] for r in accuracy] == ["fp32", "fp32", "bf16"]
    assert all(math.isfinite(r[k]) for r in accuracy for k in ("relative_error", "median_relative", "max_relative"))
    assert accuracy[0]["relative_error"] <= 1e-4 and accuracy[0]["met"] is True
    low, high = map(float, accuracy[0]["reference_depth_m"].split("-"))
    assert high - low > 5  # the depth of the rescaled random model varies, so an error cannot hide behind it
    for check in ("q k v, forward and backward", "model forward, bf16"):
        rows = [r for r in sections["attention"] if r["check"] == check]
        assert {r["backend"] for r in rows} == {b.name for b in gpu_sections.BACKENDS}
        math_rows = [r for r in rows if r["backend"] == "MATH"]
        assert all(r["status"] == "measured" and r["nonfinite_out"] == 0 for r in math_rows)
    eager = [r for r in sections["inference"] if r["mode"] == "eager"]
    assert sorted((r["batch"], r["kernels"].split(",")[0]) for r in eager) == sorted(
        (b, f"attention={impl} (forced)") for b in report["meta"]["batches"] for impl in ("explicit", "sdpa")
    )
    assert all(r["images_per_s"] > 0 and r["tflops"] > 0 for r in eager)
    step = [r for r in sections["training"] if r["mode"] == "step"]
    assert len(step) == 1 and step[0]["batch"] == max(report["meta"]["train_batches"])
    assert step[0]["tflop_per_step"] > 0 and math.isfinite(step[0]["of_ceiling"]) and step[0]["peak_memory_gib"] > 0
    goals = report["goals"]
    assert [g["goal"] for g in goals] == [g[0] for g in gpu_report.GOALS]
    assert all(g["met"] is None and "smoke run" in g["note"] for g in goals)
    assert goals[0]["value"] == max(r["images_per_s"] for r in eager if r["batch"] == 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: the full run would start")
def test_the_full_run_needs_cuda_and_writes_nothing_without(tmp_path):
    done = run_check("--out", str(tmp_path / "out"))
    assert done.returncode != 0 and "no CUDA device" in done.stderr and "--smoke" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--smoke", "--budget", "0"], "--budget 0.0: give a positive number"),
        (["--smoke", "--peak-tflops", "-5"], "--peak-tflops -5.0: give a positive number"),
        (["--smoke", "--peak-tflops", "nan"], "--peak-tflops nan: give a positive number"),
        (["--smoke", "--out", "FILE"], "is a file; give a folder"),
    ],
)
def test_bad_flags_are_refused_before_any_work(tmp_path, flags, message):
    (tmp_path / "FILE").write_text("x")
    flags = [str(tmp_path / f) if f == "FILE" else f for f in flags]
    with pytest.raises(SystemExit, match=message):
        gpu_check.check_args(gpu_check.get_args_parser().parse_args(flags))
    assert [p.name for p in tmp_path.iterdir()] == ["FILE"]


def test_peak_comes_from_the_device_name_or_the_flag():
    assert gpu_report.peak_tflops("NVIDIA H200", None)[0] == 989.0
    assert gpu_report.peak_tflops("NVIDIA H100 80GB HBM3", None)[0] == 989.0
    assert gpu_report.peak_tflops("NVIDIA H100 PCIe", None)[0] == 756.0
    assert gpu_report.peak_tflops("NVIDIA H200 NVL", None)[0] == 835.0
    assert gpu_report.peak_tflops("NVIDIA H200", 500.0) == (500.0, "--peak-tflops")
    peak, why = gpu_report.peak_tflops("Some GPU", None)
    assert peak is None and "--peak-tflops" in why


def test_a_section_over_its_budget_keeps_its_rows():
    def slow(section):
        section["rows"].append({"status": "measured", "value": 1})
        time.sleep(10)

    report = {"sections": {}}
    start = time.perf_counter()
    section = gpu_report.run_section(report, "slow", slow, 0.5, None)
    assert time.perf_counter() - start < 5
    assert section["status"] == "partial" and "0.5 s budget" in section["reason"] and section["rows"]
    assert report["sections"]["slow"] is section


def test_a_failing_section_is_recorded_with_its_error():
    def broken(section):
        section["rows"].append({"status": "measured"})
        raise ValueError("bad shape (3, 4)\nmore detail")

    section = gpu_report.run_section({"sections": {}}, "broken", broken, 5, None)
    assert section["status"] == "failed" and section["reason"] == "ValueError: bad shape (3, 4)"
    assert "Traceback" in section["traceback"] and len(section["rows"]) == 1
    skipped = gpu_report.run_section({"sections": {}}, "x", broken, 5, "not asked for")
    assert skipped["status"] == "skipped" and skipped["reason"] == "not asked for" and not skipped["rows"]


def test_goals_take_the_best_row_and_are_judged_only_at_scale():
    rows = [{"mode": "eager", "batch": 32, "status": "measured", "images_per_s": v} for v in (300.0, 360.0)]
    rows.append({"mode": "eager", "batch": 32, "status": "failed", "images_per_s": 900.0})
    rows += [{"mode": "eager", "batch": 1, "status": "measured", "ms_per_image": 9.0}]
    graph = [{"mode": "compiled + CUDA graph", "batch": 1, "status": "measured", "ms_per_image": 3.5}]
    step = [{"mode": "step", "batch": 24, "status": "measured", "mfu": 0.3}]
    sections = {"inference": {"rows": rows}, "graphs": {"rows": graph}, "training": {"rows": step}}
    report = {"meta": {"goal_scale": True, "batches": [1, 32], "scale": "vitl"}, "sections": sections}
    judged = {g["goal"]: (g["value"], g["met"]) for g in gpu_report.judge_goals(report)}
    assert list(judged.values()) == [(360.0, True), (None, None), (9.0, False), (3.5, True), (0.3, False)]
    report["meta"].update(goal_scale=False, scale="smoke run")
    assert all(g["met"] is None and g["note"] for g in gpu_report.judge_goals(report))
