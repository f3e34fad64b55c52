"""The README stays true: every command it shows names an existing entry point and only flags that entry point
accepts, every flag of train.py, run.py, run_video.py and export.py is documented, and the quick start runs (at its
smallest size)."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[list[str]]:
    """Shell commands of the README's ```bash blocks (continuation lines joined), split into words."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            words = command.split()
            if words and words[0] in ("python", "torchrun", "pip"):
                commands.append(words)
    return commands


def entry_point(words: list[str]) -> list[str] | None:
    """The `python ... --help` call that lists the flags of a README command, or None for non-Python commands."""
    if words[0] == "pip":
        return None
    if "-m" in words and words[words.index("-m") + 1] != "pytest":
        return [sys.executable, "-m", words[words.index("-m") + 1], "--help"]
    script = next((w for w in words if w.endswith(".py")), None)
    return None if script is None else [sys.executable, script, "--help"]


@cache
def help_text(call: tuple[str, ...]) -> str:
    return subprocess.run(list(call), cwd=ROOT, capture_output=True, text=True, check=True, timeout=120).stdout


def test_readme_commands_use_existing_entry_points_and_flags():
    commands = readme_commands()
    assert len(commands) >= 8
    for words in commands:
        call = entry_point(words)
        if call is None:
            continue
        text = help_text(tuple(call))
        script = next((i for i, w in enumerate(words) if w.endswith(".py")), 0)
        own = words[script:] if words[0] == "torchrun" else words  # torchrun's flags come before the script
        for flag in (w.split("=")[0] for w in own if w.startswith("--")):
            assert re.search(rf"{re.escape(flag)}\b", text), f"README command uses {flag}, unknown to {call[1:3]}"


@pytest.mark.parametrize("module", ["train", "run", "run_video", "export"])
def test_every_flag_is_documented(module):
    parser = __import__(module).get_args_parser()
    flags = {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")}
    missing = sorted(f for f in flags - {"--help"} if f"`{f}`" not in README)
    assert not missing, f"flags of {module}.py missing from the README: {missing}"


def test_quick_start_runs_at_its_smallest_size(tmp_path):
    result = subprocess.run(
        [sys.executable, "demo.py", "--size", "tiny", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "out" / "student" / "latest.pth").exists()
    depth_maps = list((tmp_path / "out" / "depth").glob("*.npy"))
    assert len(depth_maps) == 2 and len(list((tmp_path / "out" / "depth").glob("*.png"))) == 2
