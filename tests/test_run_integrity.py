"""A run is never silently wrong: checkpoint settings, the teacher, its cache, the run folder, resume and evaluation.

One test per case of the run-integrity issue; each failed on the code before it (a silent wrong result or a raw
traceback)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import read_jsonl, train_args

import train
import util.engine
from dataset import GenericDatasetWithIntrinsics
from dataset.synthetic import write_synthetic_dataset
from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.loading import CheckpointError, build_model_from_checkpoint, read_checkpoint
from util.distill import FrozenTeacher, TeacherError
from util.logger import MetricsWriter
from util.metric import MetricAccumulator
from util.monitor import CollapseMonitor, prediction_spread
from util.teacher_cache import teacher_cache_dir
from util.teacher_check import judge_teacher, teacher_problem


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """4 train and 2 val synthetic images; official-format vits weights (metric 80 m, and a relative copy)."""
    root = tmp_path_factory.mktemp("integrity")
    write_synthetic_dataset(root / "scenes", n_train=4, n_val=2, size=(84, 70), seed=3)
    torch.manual_seed(0)
    metric = DepthAnythingV2("vits", max_depth=80.0)
    torch.save(metric.state_dict(), root / "init.pth")
    torch.save({"model": metric.state_dict(), "model_config": metric.config}, root / "ours_metric.pth")
    relative = DepthAnythingV2("vits")
    relative.load_state_dict(metric.state_dict())
    torch.save({"model": relative.state_dict(), "model_config": relative.config}, root / "ours_relative.pth")
    torch.save(metric.state_dict(), root / "depth_anything_v2_vits.pth")  # an official relative file name
    return root


def run(data: Path, save_path: Path, *extra: str, steps: int = 2) -> argparse.Namespace:
    args = train.get_args_parser().parse_args(
        train_args(data, save_path, "--epochs", "1", "--max-steps", str(steps), "--log-interval", "1", *extra)
    )
    train.main(args)
    return args


def short_run(data: Path, save_path: Path, *extra: str) -> None:
    """A run whose model flags come only from `extra` (no --max-depth), 2 steps of batch 2."""
    argv = train_args(data, save_path, "--epochs", "1", "--max-steps", "2", "--log-interval", "1", *extra)
    del argv[argv.index("--max-depth") : argv.index("--max-depth") + 2]
    train.main(train.get_args_parser().parse_args(argv))


def test_resume_takes_the_checkpoints_model_settings_and_refuses_conflicts(data, tmp_path):
    save_path = tmp_path / "run"
    short_run(data, save_path, "--max-depth", "80", "--use-camera-intrinsics", "--epochs", "2")
    short_run(data, save_path, "--resume", "--max-steps", "3", "--epochs", "2")  # neither --max-depth nor the camera
    ckpt = read_checkpoint(save_path / "latest.pth")
    assert ckpt["iteration"] == 3 and ckpt["model_config"]["max_depth"] == 80.0
    assert ckpt["model_config"]["use_camera_intrinsics"] and ckpt["args"]["max_depth"] == 80.0
    with pytest.raises(SystemExit, match=r"latest.pth was trained with --max-depth 80 m, but --max-depth 20 m"):
        short_run(data, save_path, "--resume", "--max-depth", "20")
    with pytest.raises(SystemExit, match=r"--use-camera-intrinsics True, but --use-camera-intrinsics False"):
        short_run(data, save_path, "--resume", "--no-use-camera-intrinsics")


def test_eval_only_needs_only_the_checkpoint_and_the_dataset(data, tmp_path):
    ckpt = tmp_path / "ckpt" / "latest.pth"
    ckpt.parent.mkdir()
    model = DepthAnythingV2("vits", max_depth=80.0, use_camera_intrinsics=True)
    torch.save({"model": model.state_dict(), "model_config": model.config}, ckpt)
    argv = ["--eval-only", "--dataset", str(data / "scenes"), "--pretrained-from", str(ckpt), "--img-size", "70"]
    args = train.get_args_parser().parse_args(argv)
    train.main(args)
    assert (args.encoder, args.max_depth, args.use_camera_intrinsics) == ("vits", 80.0, True)
    results = json.loads((ckpt.parent / "eval.json").read_text())
    assert math.isfinite(results["abs_rel"])
    with pytest.raises(SystemExit, match=r"latest.pth was trained with --encoder 'vits', but --encoder 'vitb'"):
        train.main(train.get_args_parser().parse_args([*argv, "--encoder", "vitb"]))


def test_the_zoom_is_only_for_a_model_that_sees_the_camera(data, tmp_path, monkeypatch):
    seen = []
    original = GenericDatasetWithIntrinsics.__init__

    def record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append((self.mode, self.zoom_range))

    monkeypatch.setattr(GenericDatasetWithIntrinsics, "__init__", record)
    args = run(data, tmp_path / "no_camera")
    assert args.zoom_range is None and ("train", None) in seen
    seen.clear()
    args = run(data, tmp_path / "camera", "--use-camera-intrinsics")
    assert args.zoom_range == (0.7, 2.0) and ("train", (0.7, 2.0)) in seen
    with pytest.raises(SystemExit, match="--zoom-range 0.5 2 needs --use-camera-intrinsics"):
        run(data, tmp_path / "refused", "--zoom-range", "0.5", "2")


def test_the_teacher_cache_is_keyed_by_what_produced_it(data, tmp_path):
    other = tmp_path / "other_teacher.pth"
    other.write_bytes((data / "init.pth").read_bytes()[:-1] + b"\0")
    folders = {
        teacher_cache_dir(tmp_path / "cache", str(data / "init.pth"), False, 70),
        teacher_cache_dir(tmp_path / "cache", str(data / "init.pth"), True, 70),
        teacher_cache_dir(tmp_path / "cache", str(data / "init.pth"), False, 84),
        teacher_cache_dir(tmp_path / "cache", str(other), False, 70),
    }
    assert len(folders) == 4 and not (tmp_path / "cache").exists()  # written by cache_teacher_predictions
    # Entries are named by their image, so a reordered list reads each image's own prediction.
    lines = (data / "scenes" / "splits" / "train.txt").read_text().splitlines()
    (tmp_path / "a.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "b.txt").write_text("\n".join(reversed(lines)) + "\n")
    root = data / "scenes"
    a = GenericDatasetWithIntrinsics(tmp_path / "a.txt", root=root, teacher_cache=tmp_path / "c")
    b = GenericDatasetWithIntrinsics(tmp_path / "b.txt", root=root, teacher_cache=tmp_path / "c")
    assert a.teacher_cache_path(0) == b.teacher_cache_path(len(lines) - 1) != a.teacher_cache_path(1)


def test_a_distillation_run_logs_its_teacher_and_recomputes_for_another_one(data, tmp_path):
    save_path = tmp_path / "run"
    distill = ["--use-camera-intrinsics", "--use-distillation", "--cache-teacher", "--no-teacher-check"]
    run(data, save_path, *distill, "--teacher-checkpoint", str(data / "init.pth"))
    log = (save_path / "train.log").read_text()
    assert f"teacher {data / 'init.pth'}: vits" in log and "4 computed, 0 reused" in log
    run(data, save_path, *distill, "--teacher-checkpoint", str(data / "ours_metric.pth"), "--overwrite")
    assert "4 computed, 0 reused" in (save_path / "train.log").read_text()
    assert len(list((save_path / "teacher_cache").iterdir())) == 1  # --overwrite cleared the old cache


def test_the_teacher_cache_follows_skip_bad_samples(data, tmp_path):
    scenes = tmp_path / "scenes"
    write_synthetic_dataset(scenes, n_train=4, n_val=2, size=(84, 70), seed=4)
    lines = (scenes / "splits" / "train.txt").read_text().splitlines()
    image = scenes / lines[0].split()[0]
    image.write_bytes(image.read_bytes()[:120])  # a truncated PNG: its header passes, decoding fails
    argv = [
        "--use-camera-intrinsics",
        "--use-distillation",
        "--cache-teacher",
        "--no-teacher-check",
        "--teacher-checkpoint",
    ]
    argv += [str(data / "init.pth"), "--dataset", str(scenes)]
    with pytest.raises(SystemExit, match=r"teacher cache: .*train.txt:1: .*cannot read image.*--skip-bad-samples"):
        run(data, tmp_path / "strict", *argv)
    run(data, tmp_path / "skip", *argv, "--skip-bad-samples")
    assert "1 skipped" in (tmp_path / "skip" / "train.log").read_text()


def test_a_fresh_run_never_overwrites_another(data, tmp_path):
    save_path = tmp_path / "run"
    run(data, save_path)
    before = (save_path / "latest.pth").read_bytes()
    with pytest.raises(SystemExit, match=r"holds another run \(latest.pth, best.pth.*add --resume .* --overwrite"):
        run(data, save_path)
    assert (save_path / "latest.pth").read_bytes() == before
    run(data, save_path, "--overwrite")
    assert sum("train/loss" in e for e in read_jsonl(save_path / "metrics.jsonl")) == 2  # not appended to


def test_a_relative_teacher_is_refused(data, tmp_path, monkeypatch):
    with pytest.raises(TeacherError, match="is a relative model"):
        FrozenTeacher(str(data / "ours_relative.pth"), torch.device("cpu"))
    with pytest.raises(TeacherError, match="is a relative model"):
        FrozenTeacher(str(data / "depth_anything_v2_vits.pth"), torch.device("cpu"), max_depth=80.0)
    with pytest.raises(SystemExit, match="--teacher-checkpoint: .*relative model"):
        run(data, tmp_path / "r", "--use-distillation", "--teacher-checkpoint", str(data / "ours_relative.pth"))
    # An unknown file name: the teacher's output is compared with the ground truth.
    teacher = FrozenTeacher(str(data / "init.pth"), torch.device("cpu"), max_depth=80.0)
    assert teacher.kind is None
    val = GenericDatasetWithIntrinsics(data / "scenes" / "splits" / "val.txt", mode="val", size=(70, 70))
    disparity = {}

    def disparity_teacher(self, x):
        return disparity["map"]

    sample = val[0]
    gt = torch.nn.functional.interpolate(sample["depth"][None, None], sample["image"].shape[-2:])[0]
    disparity["map"] = 1 / gt.clamp_min(0.1)
    monkeypatch.setattr(FrozenTeacher, "forward", disparity_teacher)
    judgement = judge_teacher(teacher, val, 80.0, torch.device("cpu"), images=1)
    assert "predicts disparity" in teacher_problem(judgement)
    disparity["map"] = gt.clamp_min(0.1)
    judgement = judge_teacher(teacher, val, 80.0, torch.device("cpu"), images=1)
    assert judgement.correlation > 0.5 and teacher_problem(judgement) is None


def test_official_metric_and_relative_files_are_told_apart_by_name(data, tmp_path):
    metric = tmp_path / "depth_anything_v2_metric_hypersim_vits.pth"
    metric.write_bytes((data / "init.pth").read_bytes())
    with pytest.raises(CheckpointError, match="official metric checkpoint .* --max-depth 20"):
        build_model_from_checkpoint(metric)
    assert build_model_from_checkpoint(metric, max_depth=20.0).max_depth == 20.0
    with pytest.raises(CheckpointError, match="official relative checkpoint .* predicts disparity"):
        build_model_from_checkpoint(data / "depth_anything_v2_vits.pth", max_depth=20.0)


def test_an_evaluation_cut_by_a_kill_runs_again_on_resume(data, tmp_path, monkeypatch):
    save_path = tmp_path / "run"
    original = util.engine.evaluate

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies inside the end-of-epoch evaluation

    monkeypatch.setattr(util.engine, "evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        run(data, save_path, "--save-every", "1", "--epochs", "1", steps=0)
    assert read_checkpoint(save_path / "latest.pth")["epoch_step"] == 2  # the epoch's last step was saved
    monkeypatch.setattr(util.engine, "evaluate", original)
    run(data, save_path, "--resume", "--epochs", "1", steps=0)
    evals = [e for e in read_jsonl(save_path / "metrics.jsonl") if "eval/abs_rel" in e]
    assert [(e["step"], e["epoch"]) for e in evals] == [(2, 0)]


def test_a_run_ended_by_max_steps_evaluates_its_final_weights(data, tmp_path):
    save_path = tmp_path / "run"
    run(data, save_path, "--epochs", "5", steps=3)  # 2 steps per epoch: stops inside epoch 1
    evals = [e["step"] for e in read_jsonl(save_path / "metrics.jsonl") if "eval/abs_rel" in e]
    assert evals == [2, 3]
    assert read_checkpoint(save_path / "latest.pth")["evaluated_iteration"] == 3


def test_resume_refuses_another_batch_size(data, tmp_path):
    save_path = tmp_path / "run"
    run(data, save_path, "--epochs", "3", steps=1)
    with pytest.raises(SystemExit, match=r"was trained with --bs 2, this run has 1"):
        run(data, save_path, "--resume", "--epochs", "3", "--bs", "1", steps=2)


def test_a_collapsed_prediction_is_noticed():
    valid = torch.ones(2, 4, 4, dtype=torch.bool)
    flat = torch.full((2, 4, 4), 3.0)
    assert prediction_spread(flat, valid, 10.0) == (0.0, 0.0)
    varied = torch.rand(2, 4, 4) * 8 + 1
    assert prediction_spread(varied, valid, 10.0)[0] > 0.1
    assert prediction_spread(torch.full((2, 4, 4), 10.0), valid, 10.0)[1] == 1.0
    monitor = CollapseMonitor(patience=3)
    messages = [monitor.update(0.001, 0.0, 2e-4) for _ in range(5)]
    assert messages[:2] == [None, None] and messages[3:] == [None, None]
    assert "--warmup-iters" in messages[2] and "--clip-grad" in messages[2] and "(now 0.0002)" in messages[2]
    assert monitor.update(0.2, 0.0, 2e-4) is None and monitor.update(0.001, 0.0, 2e-4) is None
    monitor = CollapseMonitor(patience=2, warmup_iters=100, clip_grad=1.0)  # random weights always start flat
    assert monitor.update(0.001, 0.0, 2e-4, iteration=0) is None
    message = monitor.update(0.001, 0.0, 2e-4, iteration=1)
    assert "starting weights" not in message and "--warmup-iters" not in message and "--clip-grad" not in message


def test_logs_say_what_ran(data, tmp_path):
    save_path = tmp_path / "run"
    args = run(data, save_path, "--use-camera-intrinsics", "--use-distillation", "--no-teacher-check",
               "--teacher-checkpoint", str(data / "init.pth"), "--epochs", "3", steps=2)  # fmt: skip
    log = (save_path / "train.log").read_text()
    assert "iter 0/2 " in log and "loss_distill " in log and "e-0" in log.split("loss_distill ")[1][:12]
    events = read_jsonl(save_path / "metrics.jsonl")
    assert "train/lr_head" in events[0] and "train/lr" not in events[0] and "train/pred_spread" in events[0]
    config = json.loads((save_path / "config.json").read_text())
    assert config["eval_crop"] == "none" and config["max_depth"] == 10.0 and config["zoom_range"] == [0.7, 2.0]
    assert read_checkpoint(save_path / "latest.pth")["args"]["encoder"] == args.encoder == "vits"


def test_metrics_jsonl_is_json_and_small_images_are_skipped(tmp_path):
    writer = MetricsWriter(tmp_path)
    writer.write(0, {"eval/abs_rel": math.nan, "eval/d1": 0.5})
    writer.close()
    line = (tmp_path / "metrics.jsonl").read_text()
    assert json.loads(line)["eval/abs_rel"] is None and "NaN" not in line
    metrics = MetricAccumulator()
    pred, gt = torch.ones(2, 4, 4), torch.ones(2, 4, 4) * 2
    valid = torch.zeros(2, 4, 4, dtype=torch.bool)
    valid[0] = True
    valid[1, 0, :3] = True  # 3 valid pixels: not counted, as in the official evaluation
    metrics.update(pred, gt, valid)
    assert metrics.sums["count"].item() == 1
    np.testing.assert_allclose(metrics.compute()["abs_rel"], 0.5)
