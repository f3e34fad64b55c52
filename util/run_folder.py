"""The run folder (--save-path): what an earlier run left in it, --overwrite, and a write test at start."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .settings import SettingsError

logger = logging.getLogger(__name__)

# What a run that reached training leaves; a fresh run into a folder with any of these stops (`check_run_folder`).
RUN_FILES = ("latest.pth", "previous.pth", "best.pth", "metrics.jsonl")
RUN_GLOBS = ("events.out.tfevents.*",)
RUN_FOLDERS = ("teacher_cache",)
# Also deleted by --overwrite: the log and the settings of that run, and a temporary file of a killed write.
DAMAGED_NAME = "latest.pth.damaged"  # a latest.pth that failed to load, set aside when a resume fell back
RUN_EXTRAS = ("train.log", "config.json", "eval.json", DAMAGED_NAME)


def run_folder_contents(save_path: Path) -> list[Path]:
    """The files and folders of an earlier run in `save_path` (see RUN_FILES, RUN_GLOBS, RUN_FOLDERS)."""
    found = [save_path / name for name in (*RUN_FILES, *RUN_FOLDERS) if (save_path / name).exists()]
    return found + sorted(p for pattern in RUN_GLOBS for p in save_path.glob(pattern))


def check_run_folder(save_path: Path, resuming: bool, overwrite: bool) -> list[Path]:
    """A fresh run never writes over another run: stop naming --resume and --overwrite. Returns what --overwrite
    will delete once every check has passed (`clear_run_folder`)."""
    found = [] if resuming else run_folder_contents(save_path)
    if not found:
        return []
    if not overwrite:
        names = ", ".join(p.name for p in found[:6]) + (", ..." if len(found) > 6 else "")
        raise SettingsError(
            f"--save-path {save_path} holds another run ({names}); add --resume to continue it, --overwrite to "
            "delete that run and start again, or choose another --save-path"
        )
    return found + [p for p in (*(save_path / name for name in RUN_EXTRAS), *save_path.glob(".*.pth.tmp*"))
                    if p.exists()]  # fmt: skip


def clear_run_folder(save_path: Path, found: list[Path]) -> None:
    """Delete the earlier run --overwrite replaces (`check_run_folder`'s list)."""
    for path in found:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if found:
        logger.warning("--overwrite: deleted the earlier run in %s (%s)", save_path, ", ".join(p.name for p in found))


def check_save_path(save_path: Path) -> None:
    """A test write at start, so a full disk or an unwritable folder fails now, not after the first epoch."""
    try:
        save_path.mkdir(parents=True, exist_ok=True)
        probe = save_path / ".write_test"
        with open(probe, "wb") as f:
            f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as err:
        raise SystemExit(
            f"--save-path {save_path} is not writable ({err.strerror}); choose another folder or free space"
        ) from None
