"""Checksums of checkpoints (depth_anything_v2/checksum.py): stored in every checkpoint we save, verified on every
load (resume, --pretrained-from, the teacher, run.py); a damaged latest.pth falls back to previous.pth."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import read_jsonl, train_args, write_run_data

import run as run_script
import train
from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.checksum import content_checksum
from depth_anything_v2.loading import CheckpointError, read_checkpoint
from util.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_run_data(tmp_path_factory.mktemp("checksum"), 4, 2, (84, 70), seed=6)


def zero_middle(path: Path, size: int = 64 << 10) -> None:
    """Overwrite `size` bytes in the middle of `path` with zeros (what a bad disk block or copy leaves)."""
    blob = bytearray(path.read_bytes())
    start = len(blob) // 2
    blob[start : start + size] = bytes(size)
    path.write_bytes(bytes(blob))


def test_the_checksum_survives_a_save_and_load_and_covers_every_value(tmp_path):
    obj = {
        "model": {"w": torch.randn(3, 4), "half": torch.randn(5).bfloat16(), "flag": torch.tensor(True)},
        "rng": {"python": (3, (1, 2, 3), None), "numpy": ["MT19937", torch.arange(4), 0, 0, 0.0]},
        "args": {"lr": 1e-4, "name": "x", "zoom_range": [0.7, 2.0]},
        "iteration": 7,
    }
    save_checkpoint(obj, tmp_path / "c.pth")
    loaded = read_checkpoint(tmp_path / "c.pth")
    assert loaded["checksum"] == content_checksum(obj) == content_checksum(loaded)
    changed = {**obj, "iteration": 8}
    assert content_checksum(changed) != content_checksum(obj)
    changed = {**obj, "model": {**obj["model"], "w": obj["model"]["w"].clone().index_fill_(0, torch.tensor([1]), 0)}}
    assert content_checksum(changed) != content_checksum(obj)


def test_a_zeroed_block_in_a_saved_checkpoint_is_refused_naming_the_file(tmp_path):
    model = DepthAnythingV2("vits", max_depth=10.0)
    path = tmp_path / "latest.pth"
    save_checkpoint({"model": model.state_dict(), "model_config": model.config}, path)
    zero_middle(path)
    with pytest.raises(CheckpointError, match=rf"{path}: checksum mismatch: the file is damaged \(stored crc32:"):
        read_checkpoint(path)


def test_a_zeroed_block_in_a_file_without_a_checksum_is_found_by_its_zip_records(tmp_path):
    path = tmp_path / "depth_anything_v2_metric_hypersim_vits.pth"  # an official release: a bare state dict
    torch.save(DepthAnythingV2("vits", max_depth=20.0).state_dict(), path)
    read_checkpoint(path)
    zero_middle(path)
    with pytest.raises(CheckpointError, match=r"checksum mismatch: .*does not match the CRC-32 in its header"):
        read_checkpoint(path)


def test_damaged_weights_are_refused_by_pretrained_from_the_teacher_and_run_py(data, tmp_path, capsys):
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes((data / "init.pth").read_bytes())
    zero_middle(damaged)
    parser = train.get_args_parser()
    with pytest.raises(SystemExit, match=rf"--pretrained-from: {damaged}: checksum mismatch"):
        train.main(parser.parse_args(train_args(data, tmp_path / "a", pretrained=str(damaged))))
    teacher = ["--use-distillation", "--teacher-checkpoint", str(damaged)]
    with pytest.raises(SystemExit, match=rf"--teacher-checkpoint: {damaged}: checksum mismatch"):
        train.main(parser.parse_args(train_args(data, tmp_path / "b", *teacher)))
    argv = ["--load-from", str(damaged), "--img-path", str(data / "scenes" / "images"), "--outdir", str(tmp_path / "o")]
    assert run_script.main(run_script.get_args_parser().parse_args([*argv, "--max-depth", "10"])) == 2
    assert f"{damaged}: checksum mismatch" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_resume_falls_back_to_the_previous_checkpoint_when_latest_is_damaged(data, tmp_path):
    save_path = tmp_path / "run"
    parser = train.get_args_parser()
    argv = train_args(data, save_path, "--epochs", "3", "--save-every", "1", "--log-interval", "1")
    train.main(parser.parse_args([*argv, "--max-steps", "2"]))
    assert read_checkpoint(save_path / "previous.pth")["iteration"] == 2
    zero_middle(save_path / "latest.pth")
    train.main(parser.parse_args([*argv, "--max-steps", "3", "--resume"]))
    log = (save_path / "train.log").read_text()
    assert f"--resume: {save_path / 'latest.pth'}: checksum mismatch" in log
    assert f"resuming from {save_path / 'previous.pth'} instead" in log and "moved the damaged" in log
    assert read_checkpoint(save_path / "latest.pth")["iteration"] == 3
    assert (save_path / "latest.pth.damaged").exists()
    assert [e["step"] for e in read_jsonl(save_path / "metrics.jsonl") if "train/loss" in e] == [0, 1, 2]
    zero_middle(save_path / "latest.pth")
    zero_middle(save_path / "previous.pth")
    with pytest.raises(SystemExit, match=r"--resume: .*latest.pth: checksum mismatch.*the fallback .*previous.pth: "):
        train.main(parser.parse_args([*argv, "--max-steps", "4", "--resume"]))
