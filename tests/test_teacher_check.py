"""A teacher that teaches nothing is refused before the student is built (util/teacher_check.py), whatever its kind;
the collapse warning names a collapsed start or teacher; the teacher's settings are resolved once and its cache
folder is written by rank 0 only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import train_args, write_run_data

import train
import util.startup
from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.loading import CheckpointError
from util.distill import FrozenTeacher
from util.monitor import CollapseMonitor
from util.teacher_cache import cache_teacher_predictions, teacher_cache_dir
from util.teacher_check import rank_correlation


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic scenes, a random official-format init.pth, and collapsed teachers (a head with zero weights) under
    an official metric name and as our checkpoint (80 m)."""
    root = write_run_data(tmp_path_factory.mktemp("teacher"), 4, 2, (84, 70), seed=9)
    torch.manual_seed(1)
    flat = DepthAnythingV2("vits", max_depth=80.0)
    with torch.no_grad():
        flat.depth_head.scratch.output_conv2[2].weight.zero_()
        flat.depth_head.scratch.output_conv2[2].bias.zero_()
    torch.save(flat.state_dict(), root / "depth_anything_v2_metric_hypersim_vits.pth")
    torch.save({"model": flat.state_dict(), "model_config": flat.config}, root / "ours_flat.pth")
    return root


def distil(data: Path, save_path: Path, teacher: str, *extra: str) -> None:
    argv = train_args(data, save_path, "--epochs", "1", "--max-steps", "1", "--use-distillation",
                      "--teacher-checkpoint", teacher, *extra)  # fmt: skip
    train.main(train.get_args_parser().parse_args(argv))


@pytest.fixture
def no_student(monkeypatch):
    """Fail if the student is built: a teacher refusal comes first."""
    monkeypatch.setattr(train, "build_model", lambda *a: pytest.fail("the student was built"))


@pytest.mark.parametrize("name", ["depth_anything_v2_metric_hypersim_vits.pth", "ours_flat.pth"])
def test_a_collapsed_teacher_is_refused_whatever_its_kind(data, tmp_path, no_student, monkeypatch, name):
    calls = []
    for module in (util.startup,):  # its precision is resolved once, at start
        monkeypatch.setattr(
            module, "teacher_uses_bf16", lambda *a, f=module.teacher_uses_bf16: calls.append(a) or f(*a)
        )
    teacher = str(data / name)
    with pytest.raises(
        SystemExit,
        match=rf"--teacher-checkpoint {teacher}: its prediction is collapsed: depth "
        r"varies by only 0.0% .*on 2 validation images\)\. .*--no-teacher-check",
    ):
        distil(data, tmp_path / "run", teacher, "--cache-teacher")  # fmt: skip
    assert not (tmp_path / "run").exists()  # nothing written: no train.log, no config.json, no cache, no lock
    assert [c[0] for c in calls if c[0] == "auto"] == ["auto"]


def test_a_teacher_that_does_not_follow_the_ground_truth_is_refused(data, tmp_path, no_student, monkeypatch):
    def noise(self, x):
        return torch.rand(x.shape[0], *x.shape[-2:], generator=torch.Generator().manual_seed(0)) * 8 + 1

    monkeypatch.setattr(FrozenTeacher, "forward", noise)
    with pytest.raises(SystemExit, match=r"its depth hardly follows the ground truth \(rank correlation [+-]0\.0\d, "
                                         r"at least \+0\.30 needed\)"):  # fmt: skip
        distil(data, tmp_path / "run", str(data / "init.pth"))


def test_a_refused_teacher_can_still_be_used_on_request_with_a_warning(data, tmp_path):
    save_path = tmp_path / "run"
    distil(data, save_path, str(data / "ours_flat.pth"), "--no-teacher-check")
    log = (save_path / "train.log").read_text()
    assert "--no-teacher-check: distilling from a teacher that would be refused: its prediction is collapsed" in log
    assert json.loads((save_path / "config.json").read_text())["teacher_precision"] in ("bf16", "fp32")


def test_our_teacher_keeps_its_own_range_and_an_official_one_takes_max_depth(data):
    ours = str(data / "ours_flat.pth")  # 80 m
    with pytest.raises(CheckpointError, match="max_depth 80.0 m, but max_depth 10.0 was asked for"):
        FrozenTeacher(ours, torch.device("cpu"), max_depth=10.0)
    assert FrozenTeacher(ours, torch.device("cpu")).model.max_depth == 80.0
    official = str(data / "depth_anything_v2_metric_hypersim_vits.pth")
    assert FrozenTeacher(official, torch.device("cpu"), max_depth=20.0).model.max_depth == 20.0


def test_the_collapse_warning_names_a_collapsed_start_and_teacher():
    monitor = CollapseMonitor(patience=2, start="--pretrained-from a.pth", teacher="t.pth")
    flat = (0.001, 0.0)
    assert monitor.update(*flat, 1e-4, iteration=0, teacher=flat) is None
    message = monitor.update(*flat, 1e-4, iteration=1, teacher=flat)
    assert "the starting weights (--pretrained-from a.pth) were already collapsed at iteration 0" in message
    assert "the teacher t.pth gives collapsed targets" in message and "--clip-grad 1.0" in message
    monitor = CollapseMonitor(patience=2, start="--pretrained-from a.pth")
    monitor.update(0.3, 0.0, 1e-4, iteration=0)
    message = monitor.update(*flat, 1e-4, iteration=1) or monitor.update(*flat, 1e-4, iteration=2)
    assert "starting weights" not in message and "teacher" not in message


def test_the_teacher_cache_json_is_written_by_rank_0_only(data, tmp_path):
    teacher = FrozenTeacher(str(data / "init.pth"), torch.device("cpu"), max_depth=10.0)
    folder = teacher_cache_dir(tmp_path / "cache", teacher.checkpoint, False, 70)
    assert not folder.exists()  # computing the key writes nothing

    class NoImages(list):
        teacher_cache, skip_bad_samples = folder, False

    cache_teacher_predictions(teacher, NoImages(), 70, rank=1, world_size=2)
    assert folder.is_dir() and not (folder / "teacher.json").exists()
    cache_teacher_predictions(teacher, NoImages(), 70, rank=0, world_size=2)
    assert json.loads((folder / "teacher.json").read_text())["input_size"] == 70
    assert [p.name for p in folder.iterdir()] == ["teacher.json"]  # no temporary file left


def test_the_rank_correlation_gives_tied_values_their_average_rank():
    depth = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert rank_correlation(torch.full((6,), 7.0), depth) == 0.0  # a flat map follows nothing, whatever the order
    assert rank_correlation(depth.square(), depth) == pytest.approx(1.0)
    ties = torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])  # ranks 0.5, 0.5, 2.5, 2.5, 4.5, 4.5
    assert rank_correlation(ties, depth) == pytest.approx(16 / (16 * 17.5) ** 0.5)
