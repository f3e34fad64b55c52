"""The training guide's snippets, as written, on generated data in the guide's layout and file names: the file
lists (`python -m dataset.make_filelist`), the dataset import, and the inference snippet run as a script from a
folder outside the repository (that needs the README's set-up, `pip install ... -e .`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import torch
from helpers import ROOT

from dataset.make_filelist import main as make_filelist
from dataset.synthetic import write_synthetic_dataset
from depth_anything_v2 import DepthAnythingV2

GUIDE_DATASET_SNIPPET = """
from dataset.generic_with_intrinsics import GenericDatasetWithIntrinsics

trainset = GenericDatasetWithIntrinsics(
    filelist_path='dataset/splits/your_dataset/train.txt',
    mode='train',
    size=(518, 518),
    depth_scale=1.0  # Adjust if depth is not in meters
)
"""

# The guide's inference snippet with one change, encoder 'vits' for 'vitl' (a small random-weight model), and a
# print of what it computed.
GUIDE_INFERENCE_SNIPPET = (
    """
from depth_anything_v2.dpt import DepthAnythingV2
import cv2
import numpy as np
import torch

# Load model
model = DepthAnythingV2(
    encoder='vitl',
    max_depth=20.0,
    use_camera_intrinsics=True,
    cam_token_inject_layer=0
)
model.load_state_dict(torch.load('checkpoints/training_run/latest.pth')['model'])
model.eval()

# Load image and intrinsics
image = cv2.imread('path/to/image.jpg')
intrinsics = np.load('path/to/intrinsics.npy')  # 3x3 matrix

# Run inference
depth = model.infer_image(image, input_size=518, intrinsics=intrinsics)
""".replace("encoder='vitl'", "encoder='vits'")
    + "\nprint(depth.shape, np.isfinite(depth).all(), DepthAnythingV2.__module__)\n"
)


def write_guide_layout(root):
    """datasets/raw_data/your_dataset/{images/image_001.jpg, depths/depth_001.npy, intrinsics/intrinsics_001.npy}."""
    scenes = write_synthetic_dataset(root / "scenes", n_train=4, n_val=0, size=(160, 120))
    raw = root / "datasets" / "raw_data" / "your_dataset"
    for sub in ("images", "depths", "intrinsics"):
        (raw / sub).mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(
            str(raw / "images" / f"image_{i + 1:03d}.jpg"), cv2.imread(str(scenes / f"images/train_{i:05d}.png"))
        )
        for sub, name in (("depths", "depth"), ("intrinsics", "intrinsics")):
            (raw / sub / f"{name}_{i + 1:03d}.npy").write_bytes((scenes / sub / f"train_{i:05d}.npy").read_bytes())
    return raw


def test_guide_file_lists_and_dataset_snippet_as_written(tmp_path, monkeypatch, capsys):
    raw = write_guide_layout(tmp_path)
    monkeypatch.chdir(tmp_path)
    folders = {sub: f"datasets/raw_data/your_dataset/{sub}" for sub in ("images", "depths", "intrinsics")}
    make_filelist([*(f"--{sub}={folder}" for sub, folder in folders.items()), "--out", "dataset/splits/your_dataset"])
    assert "wrote 3 train and 1 val lines" in capsys.readouterr().out
    scope: dict = {}
    exec(textwrap.dedent(GUIDE_DATASET_SNIPPET), scope)
    trainset = scope["trainset"]
    assert len(trainset) == 3 and all(entry.intrinsics is not None for entry in trainset.entries)
    sample = trainset[0]
    assert sample["image"].shape == (3, 518, 518) and sample["has_intrinsics"] and sample["depth_valid"].any()
    assert Path(sample["image_path"]).resolve().parent == (raw / "images").resolve()


def test_guide_inference_snippet_runs_as_a_script_from_another_folder(tmp_path):
    torch.manual_seed(0)
    model = DepthAnythingV2("vits", max_depth=20.0, use_camera_intrinsics=True, cam_token_inject_layer=0)
    (tmp_path / "checkpoints" / "training_run").mkdir(parents=True)
    torch.save(
        {"model": model.state_dict(), "model_config": model.config}, tmp_path / "checkpoints/training_run/latest.pth"
    )
    (tmp_path / "path" / "to").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "path/to/image.jpg"), np.random.default_rng(0).integers(0, 255, (90, 120, 3), np.uint8))
    np.save(tmp_path / "path/to/intrinsics.npy", np.array([[100.0, 0, 59.5], [0, 100.0, 44.5], [0, 0, 1]]))
    (tmp_path / "infer.py").write_text(GUIDE_INFERENCE_SNIPPET)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "infer.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, (
        f"the guide's inference snippet failed outside the repository; the README's set-up installs the packages "
        f"(`pip install -e .` in {ROOT}):\n{result.stderr[-2000:]}"
    )
    assert result.stdout.split() == ["(90,", "120)", "True", "depth_anything_v2.dpt"]
