"""The repository installs as a package (`pip install -e .`, the README's set-up): its libraries import from any
folder, the scripts do not, and requirements.txt installs all the package asks for (torch unpinned)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from helpers import ROOT

IMPORTS = """
import importlib.util, sys
import dataset, dataset.adapters, dataset.check, depth_anything_v2, inference, inference.backends, util, util.metric
print(*(sys.modules[name].__file__ for name in ("dataset", "depth_anything_v2", "inference", "util")))
print(importlib.util.find_spec("train"))
"""


def test_libraries_import_from_another_folder_and_scripts_do_not(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", IMPORTS], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, f"run the README's set-up (`pip install -e .` in {ROOT}):\n{result.stderr[-2000:]}"
    files, train_spec = result.stdout.splitlines()
    packages = ("dataset", "depth_anything_v2", "inference", "util")
    assert files.split() == [str(ROOT / p / "__init__.py") for p in packages]
    assert train_spec == "None"


def test_requirements_txt_installs_what_the_package_requires():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    requirements = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    extras = [r for extra in project["optional-dependencies"].values() for r in extra]
    missing = set(project["dependencies"] + extras) - requirements
    assert not missing, f"in pyproject.toml but not in requirements.txt: {sorted(missing)}"
    assert "torch>=2.1" in project["dependencies"]  # never a pin that would replace the installed torch build
    assert not any(re.match(r"torch\s*==", requirement) for requirement in project["dependencies"])
