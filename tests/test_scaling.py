"""Scaling out on torchrun (CPU, gloo): an elastic restart after a SIGKILL resumes to the same weights, two agents
(nodes) train like one agent with two processes, a killed rank stops the run, gradient accumulation."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import KILLING_TRAIN, ROOT, assert_same_state, read_jsonl, train_args, write_run_data

import train
from depth_anything_v2.loading import read_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """8 train and 3 val images: 2 steps per epoch for 2 processes of batch 2."""
    return write_run_data(tmp_path_factory.mktemp("scaling"), 8, 3, (84, 70), seed=5)


@pytest.fixture(scope="module")
def killing_train(data) -> str:
    path = data / "killing_train.py"
    path.write_text(KILLING_TRAIN)
    return str(path)


def flags(data: Path, save_path: Path, *extra: str) -> list[str]:
    return train_args(data, save_path, "--lr", "1e-4", "--epochs", "3", "--use-camera-intrinsics", "--zoom-factor",
                      "1", "--dist-timeout", "30", *extra)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", *args]
    return subprocess.run(command, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted run of one agent with two processes."""
    save_path = tmp_path_factory.mktemp("reference")
    result = torchrun("--standalone", "--nproc_per_node=2", "train.py", *flags(data, save_path))
    assert result.returncode == 0, result.stderr[-3000:]
    return save_path


def test_an_elastic_restart_after_a_sigkill_resumes_to_the_same_weights(data, tmp_path, reference, killing_train):
    save_path = tmp_path / "elastic"
    start = time.time()
    result = torchrun("--standalone", "--nproc_per_node=2", "--max-restarts=2", killing_train, "1", "3",
                      *flags(data, save_path, "--resume", "auto", "--save-every", "1"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.time() - start < 90
    log = (save_path / "train.log").read_text()
    assert "starting a new run" in log and "--resume auto: no latest.pth yet" in log
    resumed_at = int(log.split("resuming from")[1].split("(iteration ")[1].split(")")[0])
    assert resumed_at >= 2  # killed at the start of step 3 with --save-every 1: at most one step lost
    final, expected = read_checkpoint(save_path / "latest.pth"), read_checkpoint(reference / "latest.pth")
    assert final["iteration"] == expected["iteration"] == 6
    assert_same_state(final["model"], expected["model"])


def test_two_agents_train_and_evaluate_like_one_agent_with_two_processes(data, tmp_path, reference):
    save_path = tmp_path / "two_nodes"
    port = free_port()
    rendezvous = ["--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                  "--rdzv-id=twonodes", "train.py", *flags(data, save_path)]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", *rendezvous]
    agents = [subprocess.Popen(command, env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]  # fmt: skip
    outputs = [agent.communicate(timeout=150) for agent in agents]
    assert [agent.returncode for agent in agents] == [0, 0], "\n".join(err[-2000:] for _, err in outputs)
    final, expected = read_checkpoint(save_path / "latest.pth"), read_checkpoint(reference / "latest.pth")
    assert_same_state(final["model"], expected["model"])
    evals = [e for e in read_jsonl(save_path / "metrics.jsonl") if "eval/abs_rel" in e]
    expected_evals = [e for e in read_jsonl(reference / "metrics.jsonl") if "eval/abs_rel" in e]
    assert len(evals) == len(expected_evals) == 3
    for got, want in zip(evals, expected_evals):
        assert {k: v for k, v in got.items() if k.startswith("eval/")} == pytest.approx(
            {k: v for k, v in want.items() if k.startswith("eval/")}, rel=1e-12
        )


def test_a_killed_rank_stops_the_run_and_keeps_the_last_good_checkpoint(data, tmp_path, killing_train):
    save_path = tmp_path / "killed"
    start = time.time()
    result = torchrun("--standalone", "--nproc_per_node=2", "--max-restarts=0", killing_train, "1", "3",
                      *flags(data, save_path, "--save-every", "1"))  # fmt: skip
    assert result.returncode != 0 and time.time() - start < 60
    assert str(signal.SIGKILL.value) in result.stderr or "SIGKILL" in result.stderr
    assert read_checkpoint(save_path / "latest.pth")["iteration"] in (2, 3)  # the last one written whole


def test_two_micro_batches_of_one_give_the_weights_of_one_batch_of_two(data, tmp_path):
    def weights(save_path: Path, *extra: str) -> dict:
        argv = train_args(data, save_path, "--lr", "1e-4", "--epochs", "1", "--zoom-factor", "1", "--log-interval",
                          "1", *extra)  # fmt: skip
        train.main(train.get_args_parser().parse_args(argv))
        return read_checkpoint(save_path / "latest.pth")

    whole = weights(tmp_path / "whole", "--bs", "2")
    accumulated = weights(tmp_path / "accumulated", "--bs", "1", "--accum-iter", "2")
    assert whole["iteration"] == accumulated["iteration"] == 4  # steps count optimizer steps
    init = torch.load(data / "init.pth", weights_only=True)
    for key, value in whole["model"].items():
        if key in init and value.is_floating_point():  # equal to rounding, which Adam's normalised step magnifies
            update = (value - init[key]).abs().max().item()
            assert (accumulated["model"][key] - value).abs().max().item() <= 0.01 * update + 1e-8, key
    log = (tmp_path / "accumulated" / "train.log").read_text()
    assert "per-process batch 1 x 2 accumulated (effective 2 per step)" in log
    steps = [e["step"] for e in read_jsonl(tmp_path / "accumulated" / "metrics.jsonl") if "train/loss" in e]
    assert steps == [0, 1, 2, 3]
    with pytest.raises(SystemExit, match="--accum-iter 2, this run has 1"):
        train.main(train.get_args_parser().parse_args(train_args(
            data, tmp_path / "accumulated", "--bs", "1", "--resume")))  # fmt: skip
