"""The run folder's lock: one training process writes into a --save-path at a time.

`<save-path>/run.lock` is held with `flock` by the process that trains into the folder (rank 0 under torchrun)
and says who holds it: pid, host, start time and command. The kernel releases a `flock` when its process dies,
however it dies, so a lock file whose `flock` can be taken was left by a process that no longer runs:

- held by a live process: a second start is refused, naming the holder;
- left by a dead process of this host (killed, crashed): taken over, with a log line;
- left by a process of another host: refused. On a shared file system (NFS) this host cannot tell whether that
  process still runs (the lock of a crashed host may be released by the server, or `flock` may not reach the
  server at all, e.g. `local_lock=all`): check on that host, then delete the file by hand.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

logger = logging.getLogger(__name__)

LOCK_NAME = "run.lock"


class RunLockError(SystemExit):
    """The run folder is, or may be, in use by another process: the message names it and what to do."""


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), which tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(holder: dict) -> bool:
    """Whether the process that wrote `holder` (on this host) still runs."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    started = _process_start(pid)
    return started is None or holder.get("process_start") in (None, started)


def _describe(holder: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on host {holder.get('host')}, started {started}, command: {holder.get('command')}"


class RunLock:
    """The lock of one run folder; `acquire` takes it or raises RunLockError, `release` gives it back.

    Args:
        folder: the run folder (--save-path), created by `acquire` when missing (and removed by `release` when
            it is still empty then).
    """

    def __init__(self, folder: Path) -> None:
        self.folder, self.path = Path(folder), Path(folder) / LOCK_NAME
        self.fd: int | None = None
        self.created_folder = False

    def _read_holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        """Take the lock before anything is written into the folder; RunLockError when another run has it or the
        folder cannot hold it."""
        try:
            self.created_folder = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            if fcntl is None:
                logger.warning("no run folder lock on this platform (no fcntl): do not start two runs into %s",
                               self.folder)  # fmt: skip
                return
            self._take()
        except OSError as err:
            if self.fd is not None:
                self._unlock()
            if err.errno == errno.ENOLCK:  # e.g. NFS without a lock service
                logger.warning("the file system of %s has no locks (%s): do not start two runs into it", self.folder,
                               err.strerror)  # fmt: skip
                return
            raise RunLockError(
                f"--save-path {self.folder} is not writable ({err.strerror}): the run folder lock cannot be taken; "
                "choose another folder or free space"
            ) from None

    def _take(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockError(
                    f"--save-path {self.folder} is in use by another run ({_describe(self._read_holder())}); wait "
                    f"for it to end or stop it, or choose another --save-path"
                ) from None
            except OSError:
                os.close(fd)
                raise
            # The holder may have deleted the file between our open and our flock: then lock the new one.
            if self.path.exists() and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)
        self.fd = fd
        self._check_holder(self._read_holder())
        me = {
            "pid": os.getpid(),
            "process_start": _process_start(os.getpid()),
            "host": socket.gethostname(),
            "started": time.time(),
            "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)

    def _check_holder(self, holder: dict) -> None:
        """With the flock taken: judge the lock file an earlier process left (none when the file was empty)."""
        if not holder:
            return
        if holder.get("host") != socket.gethostname():
            self._unlock()
            raise RunLockError(
                f"--save-path {self.folder} was locked by a process of another host ({_describe(holder)}), and this "
                f"host cannot tell whether it still runs (shared file system). If it has ended, delete {self.path} "
                "and start again; if it runs, choose another --save-path"
            )
        if _alive(holder):  # a file system where flock does not exclude (some network or FUSE mounts)
            self._unlock()
            raise RunLockError(
                f"--save-path {self.folder} is in use by another run ({_describe(holder)}); wait for it to end or "
                "stop it, or choose another --save-path"
            )
        logger.warning("took over the stale lock of a run that no longer runs (%s)", _describe(holder))

    def _unlock(self) -> None:
        """Give the flock back and leave the file (another process's) in place."""
        os.close(self.fd)
        self.fd = None

    def release(self) -> None:
        """Delete the lock file and unlock; remove the folder when `acquire` created it and it is still empty."""
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None
        if self.created_folder and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()
