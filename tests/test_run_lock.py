"""The run folder's lock (util/run_lock.py): a second start into a running run's --save-path is refused naming the
holder, a dead process's lock is taken over, another host's is refused, and the lock goes with the process."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, SUBPROCESS_ENV, train_args, write_run_data

import train
import util.run_lock
from util.run_lock import LOCK_NAME, RunLock, RunLockError

HOLD = f"""
import sys, time
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from util.run_lock import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_run_data(tmp_path_factory.mktemp("lock"), 4, 2, (84, 70), seed=5)


def run(data: Path, save_path: Path, *extra: str) -> None:
    argv = train_args(data, save_path, "--epochs", "1", "--max-steps", "1", "--log-interval", "1", *extra)
    train.main(train.get_args_parser().parse_args(argv))


def test_a_second_start_is_refused_naming_the_holder_then_takes_over_once_it_died(data, tmp_path, capsys):
    save_path = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(save_path)], env=SUBPROCESS_ENV, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit, match=rf"is in use by another run \(pid {holder.pid} on host "):
            run(data, save_path)
        assert sorted(p.name for p in save_path.iterdir()) == [LOCK_NAME]  # nothing written by the refused start
        assert "in use" not in capsys.readouterr().out  # one message: the SystemExit's, not also a log line
    finally:
        holder.kill()
        holder.wait()
    run(data, save_path)  # the holder died (killed, its lock file left behind): taken over
    log = (save_path / "train.log").read_text()
    assert f"took over the stale lock of a run that no longer runs (pid {holder.pid} on host" in log
    assert not (save_path / LOCK_NAME).exists(), "released at the end of the run"


def test_the_lock_of_another_host_is_refused_and_left_in_place(data, tmp_path):
    save_path = tmp_path / "run"
    save_path.mkdir()
    lock = save_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": 4242, "host": "other-host", "started": 0, "command": "train.py ..."}))
    with pytest.raises(SystemExit, match=rf"locked by a process of another host \(pid 4242 on host other-host.*delete "
                                         rf"{lock}"):  # fmt: skip
        run(data, save_path)
    assert json.loads(lock.read_text())["host"] == "other-host"


def test_a_lock_of_a_live_process_is_respected_even_without_flock(tmp_path, monkeypatch):
    """Where flock does not exclude (some network mounts), the pid and its start time still tell a live holder."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "started": 0,
                                                "command": "x", "process_start": None}))  # fmt: skip
    with pytest.raises(RunLockError, match="in use by another run"):
        RunLock(folder).acquire()  # pid 1 runs: refused though the flock was free
    assert (folder / LOCK_NAME).exists()


def test_a_refused_start_leaves_no_folder_and_release_removes_the_lock(tmp_path):
    folder = tmp_path / "new"
    lock = RunLock(folder)
    lock.acquire()
    holder = json.loads((folder / LOCK_NAME).read_text())
    assert holder["command"].startswith(Path(sys.argv[0]).name) and holder["host"] == socket.gethostname()
    with pytest.raises(RunLockError):
        RunLock(folder).acquire()  # a second holder in this process is refused too (flock is per open file)
    lock.release()
    assert not folder.exists()  # created by acquire, empty again


def test_a_file_system_without_locks_runs_with_a_warning(tmp_path, monkeypatch, caplog):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(util.run_lock.fcntl, "flock", no_locks)
    RunLock(tmp_path / "nfs").acquire()
    assert "has no locks (No locks available): do not start two runs into it" in caplog.text
