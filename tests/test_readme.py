"""The README and the docs stay true: every command in the ```bash blocks of README.md, docs/*.md and
experiments/README.md names an existing entry point and only flags that entry point accepts, every flag of train.py,
run.py, run_video.py and export.py is documented in README.md or docs/, every relative link points at an existing
file, the README stays short (at most 300 lines) and links every docs page, and the quick start runs (at its smallest
size)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
EXPERIMENTS = ROOT / "experiments" / "README.md"
PAGES = [README, *DOCS, EXPERIMENTS]
README_MAX_LINES = 300


def bash_commands(text: str) -> list[list[str]]:
    """Shell commands of the ```bash blocks of a markdown text (continuation lines joined), split into words."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            words = command.split()
            if words and words[0] in ("python", "torchrun", "pip"):
                commands.append(words)
    return commands


def entry_point(words: list[str]) -> list[str] | None:
    """The `python ... --help` call that lists the flags of a command, or None for pip and pytest."""
    if words[0] == "pip":
        return None
    if "-m" in words:
        module = words[words.index("-m") + 1]
        return None if module == "pytest" else [sys.executable, "-m", module, "--help"]
    script = next((w for w in words if w.endswith(".py")), None)
    return None if script is None else [sys.executable, script, "--help"]


@cache
def help_text(call: tuple[str, ...]) -> str:
    return subprocess.run(list(call), cwd=ROOT, capture_output=True, text=True, check=True, timeout=120).stdout


def unknown_flags(words: list[str]) -> list[str]:
    """Flags of a command that its entry point's --help does not list."""
    call = entry_point(words)
    if call is None:
        return []
    text = help_text(tuple(call))
    script = next((i for i, w in enumerate(words) if w.endswith(".py")), 0)
    own = words[script:] if words[0] == "torchrun" else words  # torchrun's flags come before the script
    flags = (w.split("=")[0] for w in own if w.startswith("--"))
    return [flag for flag in flags if not re.search(rf"{re.escape(flag)}\b", text)]


def relative_links(text: str) -> list[str]:
    """Targets of the markdown links and images of a text that are not URLs."""
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_checks_find_what_they_look_for():
    text = "```bash\npython train.py --bs 2 \\\n    --no-such-flag 1\npip install x\n```\n[a](docs/X.md) ![b](y.png)"
    text += " [c](https://example.com) [d](mailto:a@b.c)"
    assert bash_commands(text) == [["python", "train.py", "--bs", "2", "--no-such-flag", "1"], ["pip", "install", "x"]]
    assert unknown_flags(bash_commands(text)[0]) == ["--no-such-flag"]
    assert entry_point(["python", "-m", "pytest", "-q", "tests/test_x.py"]) is None
    assert relative_links(text) == ["docs/X.md", "y.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_commands_use_existing_entry_points_and_flags(page):
    commands = bash_commands(page.read_text())
    if page == README:
        assert len(commands) >= 8
    for words in commands:
        unknown = unknown_flags(words)
        assert not unknown, f"{page.relative_to(ROOT)}: `{' '.join(words)}` uses {unknown}, unknown to its --help"


@pytest.mark.parametrize("module", ["train", "run", "run_video", "export"])
def test_every_flag_is_documented(module):
    parser = __import__(module).get_args_parser()
    flags = {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")}
    documented = "\n".join(page.read_text() for page in [README, *DOCS])
    missing = sorted(f for f in flags - {"--help"} if f"`{f}`" not in documented)
    assert not missing, f"flags of {module}.py missing from README.md and docs/*.md: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_point_at_existing_files_without_anchors(page):
    for target in relative_links(page.read_text()):
        where = f"{page.relative_to(ROOT)}: link ({target})"
        assert "#" not in target, f"{where}: anchors break when sections move; link the file and name the section"
        assert (page.parent / target).exists(), f"{where} points at no file"


def test_readme_is_short_and_links_every_docs_page():
    text = README.read_text()
    n_lines = len(text.splitlines())
    assert n_lines <= README_MAX_LINES, (
        f"README.md has {n_lines} lines, at most {README_MAX_LINES}: move detail to docs/"
    )
    linked = {(ROOT / target).resolve() for target in relative_links(text)}
    unlinked = [str(p.relative_to(ROOT)) for p in [*DOCS, EXPERIMENTS] if p.resolve() not in linked]
    assert not unlinked, f"README.md does not link {unlinked}"


def test_quick_start_runs_at_its_smallest_size(tmp_path):
    result = subprocess.run(
        [sys.executable, "demo.py", "--size", "tiny", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "out" / "student" / "latest.pth").exists()
    depth_maps = list((tmp_path / "out" / "depth").glob("*.npy"))
    assert len(depth_maps) == 32 and len(list((tmp_path / "out" / "depth").glob("*.png"))) == 32
    # A seeded from-scratch run of the demo's recipe learns: both models well below the constant predictor.
    metrics = json.loads((tmp_path / "out" / "summary.json").read_text())["metrics"]
    constant = metrics["constant"]["abs_rel"]
    assert metrics["teacher"]["abs_rel"] < 0.95 * constant and metrics["student"]["abs_rel"] < 0.9 * constant, metrics
