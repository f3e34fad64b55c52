"""End-to-end training on tiny synthetic data (vits, 70 px): run folder contents, resume, DDP evaluation parity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import KERNELS, ROOT, read_jsonl, train_args, write_run_data

import train
from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.loading import read_checkpoint
from util.optim import build_optimizer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """6 train and 5 val synthetic images (an odd count, so evaluation shards are uneven), and a teacher."""
    return write_run_data(tmp_path_factory.mktemp("data"), 6, 5, (112, 84), seed=0, name="teacher.pth")


def base_args(data: Path, save_path: Path, *extra: str) -> list[str]:
    return train_args(data, save_path, "--lr", "1e-5", "--log-interval", "1", *extra, pretrained="teacher.pth")


def tensorboard_tags(save_path: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in save_path.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def test_camera_distillation_run_writes_everything_and_resumes(data, tmp_path):
    save_path = tmp_path / "run"
    camera = ["--use-camera-intrinsics", "--use-distillation", "--no-teacher-check", "--teacher-checkpoint",
              str(data / "teacher.pth")]  # fmt: skip
    train.main(train.get_args_parser().parse_args(base_args(data, save_path, "--epochs", "3", "--max-steps", "6",
                                                            *camera)))  # fmt: skip

    ckpt = read_checkpoint(save_path / "latest.pth")
    expected = {
        "model",
        "model_config",
        "optimizer",
        "scaler",
        "epoch",
        "epoch_step",
        "iteration",
        "previous_best",
        "args",
        "rng",
    }
    assert expected <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["iteration"] == 6 and ckpt["model_config"]["use_camera_intrinsics"]
    assert any(k.startswith("cam_encoder.") for k in ckpt["model"])
    assert (save_path / "best.pth").exists() and (save_path / "config.json").exists()
    assert "abs_rel" in ckpt["previous_best"]

    tags = tensorboard_tags(save_path)
    for tag in [
        "train/loss",
        "train/loss_gt",
        "train/loss_distill",
        "train/lr_head",
        "eval/abs_rel",
        "eval/d1",
        "eval/zoom_slope",
    ]:
        assert tag in tags
    events = read_jsonl(save_path / "metrics.jsonl")
    assert [e["step"] for e in events if "train/loss" in e] == list(range(6))
    assert sum("eval/silog" in e for e in events) == 2

    train.main(train.get_args_parser().parse_args(base_args(data, save_path, "--epochs", "3", "--resume", *camera)))
    resumed = read_checkpoint(save_path / "latest.pth")
    assert resumed["epoch"] == 3 and resumed["iteration"] == 9
    steps = [e["step"] for e in read_jsonl(save_path / "metrics.jsonl") if "train/loss" in e]
    assert steps == list(range(9)), "the resumed run must continue at iteration 6, not restart"


def test_invalid_combinations_fail_at_start(data, tmp_path):
    parser = train.get_args_parser()
    with pytest.raises(SystemExit, match="--use-distillation needs --teacher-checkpoint"):
        train.main(parser.parse_args(base_args(data, tmp_path / "a", "--use-distillation")))
    with pytest.raises(SystemExit, match="--cam-token-inject-layer must be in 0..11"):
        train.main(
            parser.parse_args(
                base_args(data, tmp_path / "b", "--use-camera-intrinsics", "--cam-token-inject-layer", "12")
            )
        )
    with pytest.raises(SystemExit, match="not a multiple of 14"):
        train.main(parser.parse_args(base_args(data, tmp_path / "c", "--img-size", "100")))


# Kernels timed per thread count could differ between the ranks (1 thread each) and a 2-thread run.


def test_torchrun_two_processes_evaluate_like_one(data, tmp_path):
    save_path = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(ROOT / "train.py"), *base_args(data, save_path, "--epochs", "1", "--use-camera-intrinsics", *KERNELS),
    ]  # fmt: skip
    subprocess.run(command, check=True, env=env, cwd=ROOT, timeout=300, capture_output=True)
    ddp_eval = [e for e in read_jsonl(save_path / "metrics.jsonl") if "eval/abs_rel" in e][-1]

    single = tmp_path / "single"
    latest = str(save_path / "latest.pth")
    args = base_args(data, single, "--use-camera-intrinsics", "--eval-only", "--pretrained-from", latest, *KERNELS)
    # Same thread count and kernels as the ranks, so the forward passes are bitwise equal and only the reduction
    # differs.
    subprocess.run([sys.executable, str(ROOT / "train.py"), *args], check=True, env=env, cwd=ROOT, timeout=300)
    single_eval = json.loads((single / "eval.json").read_text())
    for key, value in single_eval.items():
        assert ddp_eval[f"eval/{key}"] == pytest.approx(value, rel=1e-12, abs=1e-15), key


def test_poly_schedule_first_and_last_values():
    from util.optim import get_lr

    assert get_lr(0, 100, 1e-3) == 1e-3
    assert get_lr(99, 100, 1e-3) == pytest.approx(1e-3 * 0.01**0.9)
    assert get_lr(0, 100, 1e-3, warmup_iters=10) == pytest.approx(1e-4)


def test_optimizer_groups_and_lr_multiplier():
    model = DepthAnythingV2("vits", max_depth=10.0, use_camera_intrinsics=True)
    model.pretrained.requires_grad_(False)
    args = train.get_args_parser().parse_args(["--dataset", "x", "--save-path", "y", "--lr", "1e-5"])
    groups = {g["name"]: g for g in build_optimizer(model, args).param_groups}
    assert set(groups) == {"head", "head_no_decay"}
    assert all(g["lr_scale"] == 10.0 for g in groups.values()) and groups["head_no_decay"]["weight_decay"] == 0.0
    model.pretrained.requires_grad_(True)
    model.pretrained.mask_token.requires_grad_(False)
    groups = {g["name"]: g for g in build_optimizer(model, args).param_groups}
    assert groups["backbone"]["lr_scale"] == 1.0
    no_decay = {id(p) for p in groups["backbone_no_decay"]["params"]}
    assert id(model.pretrained.cls_token) in no_decay and id(model.pretrained.blocks[0].norm1.weight) in no_decay


def test_cached_teacher_targets_equal_fresh_ones(data, tmp_path):
    """With an identity augmentation (crop = image size, no zoom, no flip), the cached and warped teacher map is
    the teacher's prediction on the training input itself."""
    from dataset import GenericDatasetWithIntrinsics
    from util.distill import FrozenTeacher
    from util.teacher_cache import cache_teacher_predictions

    teacher = FrozenTeacher(str(data / "teacher.pth"), torch.device("cpu"), max_depth=10.0)
    for head in (teacher.model.depth_head.scratch.output_conv2[0], teacher.model.depth_head.scratch.output_conv2[2]):
        head.weight.data *= 20  # make the depth vary across the image, not sit on its bias
    dataset = GenericDatasetWithIntrinsics(
        data / "scenes" / "splits" / "train.txt",
        size=(84, 112),
        zoom_range=None,
        hflip=False,
        photometric=False,
        teacher_cache=tmp_path / "cache",
    )
    assert cache_teacher_predictions(teacher, dataset, input_size=84) == (len(dataset), 0, [])
    assert cache_teacher_predictions(teacher, dataset, input_size=84) == (0, len(dataset), [])  # kept, not redone
    for index in range(2):
        sample = dataset[(index, 0)]
        fresh = teacher(sample["image"][None])[0]
        assert fresh.std() > 1e-3 * fresh.mean()
        torch.testing.assert_close(sample["teacher_depth"], fresh, rtol=1e-4, atol=0)


def test_training_with_a_cached_teacher(data, tmp_path):
    save_path = tmp_path / "cached"
    extra = ["--epochs", "1", "--use-camera-intrinsics", "--use-distillation", "--cache-teacher", "--no-teacher-check",
             "--teacher-checkpoint", str(data / "teacher.pth")]  # fmt: skip
    train.main(train.get_args_parser().parse_args(base_args(data, save_path, *extra)))
    assert len(list((save_path / "teacher_cache").glob("*/*.npy"))) == 6
    events = read_jsonl(save_path / "metrics.jsonl")
    assert all(e["train/loss_distill"] >= 0 for e in events if "train/loss_distill" in e)


def test_each_evaluation_writes_validation_panels_to_tensorboard(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    save_path = tmp_path / "panels"
    train.main(train.get_args_parser().parse_args(base_args(data, save_path, "--epochs", "2")))
    (events,) = save_path.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
    accumulator.Reload()
    assert sorted(accumulator.Tags()["images"]) == [f"eval/images/scenes/{i}" for i in range(3)]
    shots = accumulator.Images("eval/images/scenes/0")
    assert [s.step for s in shots] == [3, 6]  # one per evaluation, at its global iteration
    # image | prediction | truth | error, each 112 x 84 (the ground truth's size), 4 px gaps
    assert (shots[0].width, shots[0].height) == (4 * 112 + 3 * 4, 84)


def test_evaluation_panel_shares_one_range_for_prediction_and_truth():
    from util.vis import evaluation_panel

    gt = np.tile(np.linspace(1.0, 5.0, 20), (10, 1))
    valid = np.ones_like(gt, dtype=bool)
    valid[0] = False
    panel = evaluation_panel(np.zeros((10, 20, 3), np.uint8), gt.copy(), gt, valid)
    W = 20
    pred_panel, truth_panel = panel[:, W + 4 : 2 * W + 4], panel[:, 2 * W + 8 : 3 * W + 8]
    np.testing.assert_array_equal(pred_panel[1:], truth_panel[1:])  # a perfect prediction looks like the truth
    assert (truth_panel[0] == 0).all() and not (pred_panel[0] == 0).all()  # invalid truth is black
