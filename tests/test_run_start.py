"""The start of a run (util/startup.py, util/settings.py): flag errors before any file is read, a random frozen
backbone refused, the from-scratch recipe, --precision auto, resume rules (a finished run, another --epochs), and
one message per refusal."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, SUBPROCESS_ENV, read_jsonl, train_args, write_run_data

import train
import util.precision
import util.settings
from util.precision import resolve_precision
from util.settings import resolve_recipe


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_run_data(tmp_path_factory.mktemp("start"), 4, 2, (84, 70), seed=8)


def parse(argv: list[str]) -> argparse.Namespace:
    return train.get_args_parser().parse_args(argv)


def without(argv: list[str], flag: str) -> list[str]:
    """`argv` without `flag` and its value."""
    i = argv.index(flag)
    return argv[:i] + argv[i + 2 :]


def test_a_random_frozen_backbone_is_refused_before_any_work(data, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "build_mixture_data", lambda *a: pytest.fail("data read before the refusal"))
    scratch = without(train_args(data, tmp_path / "run", "--epochs", "1", "--max-steps", "1"), "--pretrained-from")
    with pytest.raises(SystemExit, match=r"(?s)starts from random weights.*--pretrained-from CHECKPOINT.*"
                                         r"--no-freeze-dinov2 \(then a warm-up and --clip-grad 1.0"):  # fmt: skip
        train.main(parse(scratch))
    with pytest.raises(SystemExit, match="starts from random weights"):
        train.main(parse([*scratch, "--freeze-dinov2", "--resume", "auto"]))  # nothing to resume: a new run too
    assert not (tmp_path / "run").exists()


def test_from_scratch_the_recipe_and_precision_auto_are_resolved_logged_and_stored(data, tmp_path, monkeypatch):
    monkeypatch.setattr(util.precision, "has_fast_bf16", lambda device: False)
    save_path = tmp_path / "scratch"
    scratch = without(train_args(data, save_path, "--epochs", "10", "--max-steps", "1"), "--pretrained-from")
    train.main(parse([*without(scratch, "--precision"), "--no-freeze-dinov2", "--lr", "1e-4"]))
    config = json.loads((save_path / "config.json").read_text())
    assert (config["warmup_iters"], config["clip_grad"]) == (2, 1.0)  # 10 % of 10 epochs x 2 steps
    assert config["precision"] == "fp32" and "no native bf16" in config["precision_reason"]
    assert config["teacher_precision"] == "fp32"  # resolved once, at start
    log = (save_path / "train.log").read_text()
    assert "--warmup-iters 2 and --clip-grad 1: from random weights" in log
    assert "precision fp32 (auto: this CPU has no native bf16" in log


def test_the_recipe_rule_and_an_explicit_value_winning():
    args = argparse.Namespace(pretrained_from=None, warmup_iters=None, clip_grad=None)
    resolve_recipe(args, 5000)
    assert (args.warmup_iters, args.clip_grad) == (100, 1.0)
    args = argparse.Namespace(pretrained_from=None, warmup_iters=7, clip_grad=None)
    resolve_recipe(args, 5000)
    assert (args.warmup_iters, args.clip_grad) == (7, 1.0)
    args = argparse.Namespace(pretrained_from="x.pth", warmup_iters=None, clip_grad=None)
    assert "from pretrained weights" in resolve_recipe(args, 5000)
    assert (args.warmup_iters, args.clip_grad) == (0, 0.0)


def test_precision_auto_follows_native_bf16_and_says_why(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(util.precision, "has_fast_bf16", lambda device: True)
    assert resolve_precision("auto", cpu) == ("bf16", "auto: this CPU runs bf16 natively", None)
    monkeypatch.setattr(util.precision, "has_fast_bf16", lambda device: False)
    precision, reason, warning = resolve_precision("auto", cpu)
    assert precision == "fp32" and "no native bf16" in reason and warning is None
    precision, reason, warning = resolve_precision("bf16", cpu)
    assert precision == "bf16" and "about 4x slower than fp32 (0.3 against 1.2 samples/s" in warning
    assert resolve_precision("fp32", cpu) == ("fp32", "--precision fp32 was asked for", None)
    assert train.get_args_parser().get_default("precision") == "auto"


def test_flag_errors_come_before_any_file_is_read(data, tmp_path, monkeypatch):
    monkeypatch.setattr(util.settings, "read_checkpoint", lambda path: pytest.fail(f"{path} read before the flags"))
    argv = train_args(data, tmp_path / "run", "--img-size", "100", "--use-distillation")
    with pytest.raises(SystemExit, match=r"(?s)--use-distillation needs --teacher-checkpoint.*not a multiple of 14"):
        train.main(parse(argv))
    with pytest.raises(SystemExit, match=r"--save-path DIR is required for training \(the run folder whose latest"):
        train.main(parse([*without(train_args(data, tmp_path / "run"), "--save-path"), "--resume"]))


def test_resume_rules_a_stopped_run_continues_a_finished_one_says_so_another_schedule_is_refused(
    data, tmp_path, capsys
):
    save_path = tmp_path / "run"
    argv = train_args(data, save_path, "--log-interval", "1")
    train.main(parse([*argv, "--epochs", "1", "--max-steps", "1"]))
    capsys.readouterr()
    train.main(parse([*argv, "--max-steps", "1", "--resume"]))
    assert (
        "the run stopped at --max-steps 1 (iteration 1 of its schedule's 2): nothing to train"
        in capsys.readouterr().out
    )
    train.main(parse([*argv, "--resume"]))  # to the end of the checkpoint's --epochs 1
    assert [e["step"] for e in read_jsonl(save_path / "metrics.jsonl") if "train/loss" in e] == [0, 1]
    before = (save_path / "latest.pth").stat().st_mtime_ns, (save_path / "metrics.jsonl").read_text()
    capsys.readouterr()
    train.main(parse([*argv, "--resume"]))
    out = capsys.readouterr().out
    assert "the run is complete (1 epochs, 2 iterations): nothing to train" in out
    assert f"--pretrained-from {save_path / 'latest.pth'} --save-path NEW_FOLDER" in out
    assert ((save_path / "latest.pth").stat().st_mtime_ns, (save_path / "metrics.jsonl").read_text()) == before
    with pytest.raises(SystemExit, match=r"was trained with --epochs 1, but --epochs 3 was given; a resume keeps its "
                                         r"learning-rate schedule"):  # fmt: skip
        train.main(parse([*argv, "--resume", "--epochs", "3"]))
    with pytest.raises(SystemExit, match=r"was trained with --freeze-dinov2, but --no-freeze-dinov2 was given"):
        train.main(parse([*argv, "--resume", "--no-freeze-dinov2"]))
    assert "was trained with" not in capsys.readouterr().out  # one message: the SystemExit's, not also a log line


def test_a_data_refusal_prints_one_message_and_no_traceback(data, tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    (scenes / "splits").mkdir()
    (scenes / "splits" / "val.txt").write_text("images/missing.png depths/missing.npy\n")
    argv = train_args(data, tmp_path / "run")
    argv[argv.index("--dataset") + 1] = str(scenes)
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *argv], env=SUBPROCESS_ENV, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1 and output.count("missing.png") == 1 and "Traceback" not in output
    assert not (tmp_path / "run").exists()
