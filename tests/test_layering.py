"""The direction of imports, read from the source: depth_anything_v2 <- dataset <- util (training side) <- inference
<- scripts.

The model package also works when its folder is copied alone into another project."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT

# What each package may import of the repo (itself included).
ALLOWED = {
    "depth_anything_v2": {"depth_anything_v2"},
    "dataset": {"depth_anything_v2", "dataset"},
    "util": {"depth_anything_v2", "dataset", "util"},
    "inference": {"depth_anything_v2", "dataset", "util", "inference"},
}
SCRIPTS = {path.stem for path in ROOT.glob("*.py")}
TOOLS = ("benchmarks", "experiments")
REPO_NAMES = {*ALLOWED, *SCRIPTS, "benchmarks", "experiments"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def repo_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported repo module, line, at module level) for every import of a repo module in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            names = [prefix] if node.module else [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in REPO_NAMES:
                found.append((name, node.lineno, id(node) in top_level))
    return found


def source_files() -> list[Path]:
    folders = [*ALLOWED, *TOOLS]
    return [*ROOT.glob("*.py"), *(p for folder in folders for p in (ROOT / folder).rglob("*.py"))]


def test_imports_run_one_way_and_nothing_imports_a_script():
    problems = []
    for path in source_files():
        owner = path.relative_to(ROOT).parts[0] if len(path.relative_to(ROOT).parts) > 1 else "script"
        for name, line, _ in repo_imports(path):
            top = name.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line} imports {name}"
            if top in SCRIPTS:
                problems.append(f"{where}: nothing may import a script")
            elif owner in ALLOWED and top not in ALLOWED[owner]:
                problems.append(f"{where}: {owner} may import only {sorted(ALLOWED[owner])}")
    assert not problems, "\n".join(problems)


def test_repo_imports_sit_at_module_level():
    """An import inside a function that exists to dodge a circle hides the circle: there must be none."""
    problems = [
        f"{path.relative_to(ROOT)}:{line} imports {name} inside a function"
        for path in source_files()
        for name, line, top in repo_imports(path)
        if not top
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_circle_inside_a_package(package):
    files = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph = {
        name: {target for target, _, _ in repo_imports(path) if target in files and target != name}
        for name, path in files.items()
    }
    # `from pkg import name` counts as importing pkg; a package's own __init__ re-exporting is fine.
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1 and not (nxt == package or node == package):
                raise AssertionError(f"import circle: {' -> '.join([*stack, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


COPIED_MODEL_SCRIPT = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dataset", "util", "train", "run"):
            raise ImportError(f"the copied model package imported {name}")
sys.meta_path.insert(0, Refuse())
import cv2, numpy as np, torch
from depth_anything_v2 import DepthAnythingV2, build_model_from_checkpoint
from depth_anything_v2.geometry import make_intrinsics, unproject
assert DepthAnythingV2.__module__ == "depth_anything_v2.dpt" and sys.modules["depth_anything_v2"].__file__.startswith(
    sys.argv[1]), sys.modules["depth_anything_v2"].__file__
torch.manual_seed(0)
model = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True).eval()
torch.save({"model": model.state_dict(), "model_config": model.config}, "ckpt.pth")
loaded = build_model_from_checkpoint("ckpt.pth")
image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
K = make_intrinsics(70.0, 70.0, 39.5, 29.5)
depth = loaded.infer_image(image, input_size=56, intrinsics=K)
assert depth.shape == (60, 80) and np.isfinite(depth).all()
assert unproject(depth, K).shape == (60, 80, 3)
print("ok")
"""


def test_the_model_package_works_copied_alone(tmp_path):
    shutil.copytree(ROOT / "depth_anything_v2", tmp_path / "depth_anything_v2", ignore=shutil.ignore_patterns("*.pyc"))
    script = tmp_path / "use_model.py"
    script.write_text(textwrap.dedent(COPIED_MODEL_SCRIPT))
    result = subprocess.run(
        [sys.executable, "-E", "-s", str(script), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_command_line_modules_are_imported_by_nothing():
    cli = {"dataset.prepare", "dataset.make_filelist"}
    problems = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in source_files()
        for name, line, _ in repo_imports(path)
        if any(name == c or name.startswith(f"{c}.") for c in cli)
    ]
    assert not problems, "\n".join(problems)


def test_source_files_stay_small():
    """Small modules with one job: no source file over 400 lines."""
    long = {str(p.relative_to(ROOT)): n for p in source_files() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
