"""benchmarks/bench_backends.py: its rows, its targets and table, and one row of ours and of the official code (a
stand-in: a copy of our model package, which has the official package's name and constructor) in fresh processes."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_backends  # noqa: E402


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(bench_backends.get_args_parser().parse_args([])), **kw})


def test_plan_has_a_row_per_backend_and_encoder():
    rows = {(c["encoder"], c["code"], c["runtime"], c["precision"], c["size"]) for c in
            bench_backends.plan(_args(official="/x"), native_bf16=True)}  # fmt: skip
    for encoder in ("vits", "vitb"):
        for code in ("ours", "official"):
            for runtime, precision in [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"),
                                       ("openvino", "fp32"), ("openvino", "bf16")]:  # fmt: skip
                assert (encoder, code, runtime, precision, 518) in rows
    assert len(rows) == 20
    without = bench_backends.plan(_args(), native_bf16=False)
    assert {c["code"] for c in without} == {"ours"}
    assert ("openvino", "bf16") not in {(c["runtime"], c["precision"]) for c in without}  # no native bf16
    assert {c["size"] for c in bench_backends.plan(_args(quick=True), native_bf16=True)} == {70}
    shared = [c for c in bench_backends.plan(_args(official="/x"), True, {"vits": "w.pth"}) if "weights" in c]
    assert [(c["code"], c["round"], c["profile_layers"]) for c in shared] == [
        ("ours", 0, True), ("official", 0, True), ("official", 1, False), ("ours", 1, False), ("ours", 2, False),
        ("official", 2, False)]  # fmt: skip
    assert all((c["runtime"], c["precision"], c["weights"]) == ("openvino", "bf16", "w.pth") for c in shared)


def test_targets_and_table():
    row = {"encoder": "vits", "size": 518}
    results = [
        {**row, "code": "ours", "runtime": "torch", "precision": "bf16", "seconds": 0.2},
        {**row, "code": "ours", "runtime": "openvino", "precision": "bf16", "seconds": 0.1, "export_seconds": 9.0},
        {**row, "code": "official", "runtime": "torch", "precision": "bf16", "seconds": 0.25},
        {**row, "code": "official", "runtime": "openvino", "precision": "bf16", "seconds": 0.095},
    ]
    checks = {c["target"]: c for c in bench_backends.summarize(results)}
    ov = checks["vits: fastest of ours (openvino bf16) / official openvino bf16"]
    assert ov["value"] == pytest.approx(0.1 / 0.095) and ov["met"]
    torch_check = checks["vits: fastest of ours (openvino bf16) / official torch bf16"]
    assert torch_check["value"] == pytest.approx(0.4) and torch_check["met"]
    meta = {"command": "c", "date": "d", "cpu": "x", "torch": "t", "onnxruntime": "o", "openvino": "v", "threads": 2,
            "native_bf16": True, "load_average_before": (0.5, 0.5, 0.5)}  # fmt: skip
    table = bench_backends.markdown({"meta": meta, "results": results, "targets": list(checks.values())})
    assert "| vits | ours | openvino | bf16 | 518 | 0.1000 | 9.0 | own |  |  |" in table
    assert "needs the official rows" in bench_backends.markdown({"meta": meta, "results": results, "targets": []})


def test_same_weights_targets_and_profile():
    shared = {"encoder": "vits", "size": 518, "runtime": "openvino", "precision": "bf16", "weights": "w.pth"}
    profile = {"total_ms": 100.0, "by_type": [("FullyConnected", "brgemm_avx512_bf16", 45.0)],
               "layers": [("node_linear_7", "FullyConnected", "brgemm_avx512_bf16", 2.0)]}  # fmt: skip
    results = [
        {**shared, "code": "ours", "round": 0, "seconds": 0.08, "max_relative": 0.009, "layer_profile": profile},
        {**shared, "code": "official", "round": 0, "seconds": 0.10},
        {**shared, "code": "official", "round": 1, "seconds": 0.20},
        {**shared, "code": "ours", "round": 1, "seconds": 0.19, "max_relative": 0.012},
    ]
    checks = {c["target"]: c for c in bench_backends.summarize(results)}
    speed = checks["vits: our graph / the official graph, OpenVINO bf16, same weights"]
    assert speed["rounds"] == pytest.approx([0.8, 0.95]) and speed["value"] == pytest.approx(0.875) and not speed["met"]
    accuracy = checks["vits: largest relative difference of our OpenVINO bf16 depth to our PyTorch fp32 depth"]
    assert accuracy["value"] == 0.012 and not accuracy["met"]
    assert len(checks) == 2  # the rows with shared weights do not enter the issue-17 targets
    meta = {"command": "c", "date": "d", "cpu": "x", "torch": "t", "onnxruntime": "o", "openvino": "v", "threads": 2,
            "native_bf16": True, "load_average_before": (0.5, 0.5, 0.5)}  # fmt: skip
    table = bench_backends.markdown({"meta": meta, "results": results, "targets": list(checks.values())})
    assert "| vits | ours | openvino | bf16 | 518 | 0.0800 |  | shared | 0 | 0.0090 |" in table
    assert "| FullyConnected | brgemm_avx512_bf16 | 45.0 | 45% |" in table
    assert "| `node_linear_7` | FullyConnected | 2.00 | 2.0% |" in table


def official_stand_in(folder: Path) -> Path:
    """A folder laid out as the official repository: metric_depth/depth_anything_v2 (a copy of our model package,
    whose constructor takes the official arguments) and metric_depth/util/loss.py with a SiLogLoss."""
    shutil.copytree(ROOT / "depth_anything_v2", folder / "metric_depth" / "depth_anything_v2")
    (folder / "metric_depth" / "util").mkdir()
    (folder / "metric_depth" / "util" / "loss.py").write_text(
        "import torch\n"
        "class SiLogLoss(torch.nn.Module):\n"
        "    def forward(self, pred, target, valid):\n"
        "        d = torch.log(target[valid]) - torch.log(pred[valid])\n"
        "        return torch.sqrt((d**2).mean() - 0.5 * d.mean() ** 2)\n"
    )
    return folder


def test_one_row_of_ours_and_of_the_official_code(tmp_path):
    repo = official_stand_in(tmp_path)
    case = {"encoder": "vits", "size": 28, "threads": 1, "warmup": 0, "repeats": 1, "runtime": "torch",
            "precision": "fp32"}  # fmt: skip
    ours = bench_backends.run_case({**case, "code": "ours"}, None)
    official = bench_backends.run_case({**case, "code": "official"}, str(repo))
    assert ours["seconds"] > 0 and official["seconds"] > 0 and len(official["times"]) == 1
    # A row with shared weights: our camera-less model, its depth against torch, OpenVINO's per-layer profile.
    weights = bench_backends.write_shared_weights(tmp_path / "w.pth", "vits", 28)
    shared = {**case, "runtime": "openvino", "weights": str(weights), "profile_layers": True, "round": 0}
    ours = bench_backends.run_case({**shared, "code": "ours"}, None)
    assert ours["max_relative"] < 1e-4 and ours["layer_profile"]["total_ms"] > 0
    assert {t for t, _, _ in ours["layer_profile"]["by_type"]} >= {"FullyConnected", "Convolution"}
    with pytest.raises(SystemExit, match="no metric_depth/depth_anything_v2/dpt.py there"):
        bench_backends.main(_args(official=str(tmp_path / "nothing")))
