"""The mixture experiment (experiments/mixture_experiment.py) end to end at its smallest setting, and its report."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from helpers import ROOT, SUBPROCESS_ENV

from experiments.mixture_experiment import HELD_OUT, TRAIN_CAMERAS

MARKED = "intro\n<!-- mixture results -->\nold\n<!-- /mixture results -->\noutro\n"


def test_smoke_setting_trains_a_and_c_on_the_mixture_and_reports_each_held_out_camera(tmp_path):
    doc = tmp_path / "MIXTURE.md"
    doc.write_text(MARKED)
    command = [sys.executable, str(ROOT / "experiments" / "mixture_experiment.py"), "--scale", "smoke", "--work",
               str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--doc", str(doc)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "mixture_smoke.json").read_text())
    labels = [c.label for c in (*TRAIN_CAMERAS, *HELD_OUT)]
    for model in ("A", "C"):
        final = record["seed_runs"]["0"][model]["final"]
        assert set(final) == {*labels, "mean"}
        for label in labels:
            assert all(math.isfinite(final[label][m]) for m in ("abs_rel", "d1", "zoom_slope")), (model, label)
        assert record["summary"][model]["test25"]["abs_rel"]["values"] == [final["test25"]["abs_rel"]]
    # The training mixture is the three cameras at equal weights; the held-out cameras were never drawn.
    a_log = (tmp_path / "work" / "seed0" / "A" / "metrics.jsonl").read_text().splitlines()
    last = [json.loads(line) for line in a_log if "data/cam40/samples" in line][-1]
    assert {k for k in last if k.startswith("data/")} == {f"data/{c.label}/samples" for c in TRAIN_CAMERAS}
    text = (tmp_path / "out" / "mixture_smoke.md").read_text()
    assert all(c.label in text for c in HELD_OUT) and "C beats A on" in text and "does not beat A on" in text
    assert (tmp_path / "out" / "mixture_smoke.png").stat().st_size > 1000
    block = doc.read_text()
    assert block.startswith("intro\n<!-- mixture results -->\nResults of") and block.endswith("outro\n")
    assert "old" not in block and "![mixture experiment](out/mixture_smoke.png)" in block

    # The report rebuilds from the .json alone.
    rebuild = [sys.executable, str(ROOT / "experiments" / "mixture_report.py"), str(tmp_path / "out" /
               "mixture_smoke.json"), "--out", str(tmp_path / "again")]  # fmt: skip
    subprocess.run(rebuild, cwd=ROOT, env=SUBPROCESS_ENV, check=True, capture_output=True, timeout=120)
    assert (tmp_path / "again" / "mixture_smoke.md").read_text() == text
