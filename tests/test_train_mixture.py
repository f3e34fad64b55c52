"""train.py on a mixture: a 3:1 TOML mixture with a millimetre PNG dataset and a held-out camera, per-dataset
counts and evaluation keys, a missing depth_scale stopping before training, exact resume after SIGKILL (also with
two torchrun ranks), bad specs and a changed mixture refused at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import KERNELS, KILLING_TRAIN, ROOT, SUBPROCESS_ENV, assert_same_state, read_jsonl

import train
from dataset.synthetic import write_synthetic_dataset
from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.loading import read_checkpoint


def to_millimetre_pngs_without_k(root: Path) -> None:
    """Rewrite a synthetic dataset's depth as 16-bit PNGs in millimetres and its lists to name them, without K
    (a depth camera's dump: its samples get the null camera)."""
    for npy in (root / "depths").glob("*.npy"):
        cv2.imwrite(str(npy.with_suffix(".png")), np.round(np.load(npy) * 1000).astype(np.uint16))
        npy.unlink()
    for split in (root / "splits").glob("*.txt"):
        lines = [" ".join(line.split()[:2]).replace(".npy", ".png") for line in split.read_text().splitlines()]
        split.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixture")
    write_synthetic_dataset(root / "metres", 6, 2, (42, 28), (40.0, 40.0), seed=1)
    write_synthetic_dataset(root / "kinect", 4, 2, (56, 42), (90.0, 90.0), seed=2)
    to_millimetre_pngs_without_k(root / "kinect")
    write_synthetic_dataset(root / "narrow", 0, 2, (42, 28), (25.0, 25.0), seed=3)
    mixture = '[[dataset]]\npath = "metres"\nweight = 3\n\n[[dataset]]\npath = "kinect"\nlabel = "mm"\n'
    (root / "mix.toml").write_text(mixture + "depth_scale = 0.001\n")
    (root / "mix_no_scale.toml").write_text(mixture)
    torch.manual_seed(0)
    torch.save(DepthAnythingV2("vits", max_depth=10.0).state_dict(), root / "init.pth")
    (root / "killing_train.py").write_text(KILLING_TRAIN)
    return root


def mixture_args(data: Path, save_path: Path, *extra: str, dataset: str = "mix.toml") -> list[str]:
    """12 steps of batch 2 (2 epochs of 6), fp32, evaluated at the end with the held-out camera."""
    return [
        "--encoder", "vits", "--dataset", str(data / dataset), "--eval-datasets", str(data / "narrow"),
        "--img-size", "28", "--max-depth", "10", "--bs", "2", "--workers", "0", "--device", "cpu",
        "--precision", "fp32", *KERNELS, "--pretrained-from", str(data / "init.pth"), "--lr", "1e-4",
        "--use-camera-intrinsics", "--zoom-factor", "1", "--steps-per-epoch", "6", "--epochs", "2",
        "--log-interval", "1", "--eval-interval", "2", "--save-path", str(save_path), *extra,
    ]  # fmt: skip


def drawn(save_path: Path) -> dict[str, float]:
    """The last logged data/<label>/samples."""
    last = [e for e in read_jsonl(save_path / "metrics.jsonl") if any(k.startswith("data/") for k in e)][-1]
    return {k: v for k, v in last.items() if k.startswith("data/")}


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> Path:
    save_path = tmp_path_factory.mktemp("straight")
    train.main(train.get_args_parser().parse_args(mixture_args(data, save_path)))
    return save_path


def test_a_weighted_mixture_draws_its_shares_and_evaluates_each_dataset(straight):
    assert drawn(straight) == {"data/metres/samples": 18, "data/mm/samples": 6}
    events = read_jsonl(straight / "metrics.jsonl")
    evaluations = [e for e in events if "eval/mean/abs_rel" in e]
    assert len(evaluations) == 1
    last = evaluations[-1]
    for label in ("metres", "mm", "narrow"):
        assert np.isfinite(last[f"eval/{label}/abs_rel"]) and f"eval/{label}/d1" in last
    # The mean is over the training datasets only, and the plain DA-V2 tags carry it.
    assert last["eval/mean/abs_rel"] == pytest.approx((last["eval/metres/abs_rel"] + last["eval/mm/abs_rel"]) / 2)
    assert last["eval/abs_rel"] == last["eval/mean/abs_rel"]
    ckpt = read_checkpoint(straight / "latest.pth")
    assert ckpt["sampler"]["drawn"] == [18, 6] and ckpt["previous_best"]["abs_rel"] <= last["eval/abs_rel"]
    assert [(d["label"], d["weight"], d["depth_scale"]) for d in ckpt["args"]["mixture"]] == [
        ("metres", 3.0, None), ("mm", 1.0, 0.001)]  # fmt: skip
    log = (straight / "train.log").read_text()
    table = log.split("datasets:\n")[1]
    assert "metres" in table and "75.0%" in table and "25.0%" in table and "eval only" in table and "no K" in table
    assert "narrow (held out): d1" in log


def test_a_millimetre_dataset_without_its_depth_scale_stops_before_training(data, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "build_model", lambda *a: pytest.fail("the model was built before the data check"))
    save_path = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        train.main(train.get_args_parser().parse_args(mixture_args(data, save_path, dataset="mix_no_scale.toml")))
    message = str(stop.value)
    # Both splits of the dataset are reported at once, each naming its label, its list and the fix.
    assert "[mm] training data: " in message and "[mm] validation data: " in message
    assert "kinect/splits/train.txt" in message and "likely fix: --depth-scale 0.001" in message
    assert "in a mixture, set them for mm alone: depth_scale = ..., max_depth = ..." in message
    assert "[metres]" not in message
    assert not (save_path / "latest.pth").exists() and not (save_path / "config.json").exists()


BAD_SPECS = {
    "metres:0": "weight '0' must be a positive number",
    "metres:-2": "weight '-2' must be a positive number",
    "metres:lots": "weight 'lots' is not a number",
    "nowhere": "'nowhere' is not a folder",
    "metres,metres": "two datasets are labelled 'metres'",
    ",": "an empty mixture",
}


def test_bad_specs_are_refused_before_any_work(data, tmp_path, monkeypatch):
    monkeypatch.chdir(data)
    monkeypatch.setattr(train, "start", lambda *a: pytest.fail("work started before the spec was checked"))
    for spec, expected in BAD_SPECS.items():
        argv = mixture_args(data, tmp_path / "run")
        argv[argv.index("--dataset") + 1] = spec
        with pytest.raises(SystemExit) as stop:
            train.main(train.get_args_parser().parse_args(argv))
        assert expected in str(stop.value) and "\n" not in str(stop.value), spec
    (data / "typo.toml").write_text('[[dataset]]\npath = "metres"\nwieght = 2\n')
    argv = mixture_args(data, tmp_path / "run", dataset="typo.toml")
    start = time.time()
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *argv], env=SUBPROCESS_ENV, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and time.time() - start < 60
    assert result.stderr.strip().splitlines() == [
        f"{data / 'typo.toml'} [[dataset]] #1: unknown key 'wieght'; the known keys are path, name, data_root, "
        "weight, label, depth_scale, min_depth, max_depth, eval"
    ]
    assert not (tmp_path / "run").exists()


def test_sigkill_and_resume_gives_the_same_weights_and_counts(data, tmp_path, straight):
    save_path = tmp_path / "killed"
    argv = mixture_args(data, save_path, "--save-every", "4")
    killed = subprocess.run([sys.executable, str(data / "killing_train.py"), "0", "8", *argv], env=SUBPROCESS_ENV,
                            cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert read_checkpoint(save_path / "latest.pth")["iteration"] == 8  # mid-epoch 1
    train.main(train.get_args_parser().parse_args([*argv, "--resume"]))
    final, expected = read_checkpoint(save_path / "latest.pth"), read_checkpoint(straight / "latest.pth")
    assert final["iteration"] == 12
    assert_same_state(final["model"], expected["model"])
    assert final["sampler"]["drawn"] == expected["sampler"]["drawn"] == [18, 6]
    assert drawn(save_path) == drawn(straight)


def test_resuming_on_another_mixture_is_refused_unless_asked(data, tmp_path, straight):
    other = tmp_path / "other.toml"
    other.write_text(f'[[dataset]]\npath = "{data / "metres"}"\nweight = 1\n')
    argv = mixture_args(data, straight, "--resume", dataset=str(other))
    with pytest.raises(
        SystemExit, match=r"trained on another mixture: dataset 'mm' missing; weight of 'metres' 3 -> 1"
    ):
        train.main(train.get_args_parser().parse_args(argv))
    assert read_checkpoint(straight / "latest.pth")["iteration"] == 12
    # Asked for, a stopped run goes on: metres continues from its samples drawn so far, and the change is logged.
    changed = tmp_path / "changed"
    train.main(train.get_args_parser().parse_args(mixture_args(data, changed, "--max-steps", "8")))
    before = drawn(changed)["data/metres/samples"]
    argv = mixture_args(data, changed, "--resume", "--max-steps", "9", "--change-mixture", dataset=str(other))
    train.main(train.get_args_parser().parse_args(argv))
    assert "--change-mixture: resuming" in (changed / "train.log").read_text()
    assert drawn(changed) == {"data/metres/samples": before + 2}


def test_eval_only_evaluates_every_dataset(data, tmp_path, straight):
    argv = mixture_args(data, tmp_path / "eval", "--eval-only", "--pretrained-from", str(straight / "latest.pth"))
    train.main(train.get_args_parser().parse_args(argv))
    results = json.loads((tmp_path / "eval" / "eval.json").read_text())
    final = [e for e in read_jsonl(straight / "metrics.jsonl") if "eval/abs_rel" in e][-1]
    for key in ("abs_rel", "mean/abs_rel", "metres/abs_rel", "mm/abs_rel", "narrow/abs_rel"):
        assert results[key] == pytest.approx(final[f"eval/{key}"], rel=1e-9), key


def test_two_torchrun_ranks_resume_after_sigkill_to_the_same_weights_and_counts(data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    runs = {}
    for name, script, extra in (("reference", [str(ROOT / "train.py")], ()),
                                ("killed", [str(data / "killing_train.py"), "1", "5"],
                                 ("--resume", "auto", "--save-every", "2"))):  # fmt: skip
        argv = mixture_args(
            data, tmp_path / name, "--bs", "1", "--steps-per-epoch", "4", "--dist-timeout", "60", *extra
        )
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                   "--max-restarts=1", *script, *argv]  # fmt: skip
        runs[name] = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for name, process in runs.items():
        _, err = process.communicate(timeout=500)
        assert process.returncode == 0, err.decode()[-3000:]
    log = (tmp_path / "killed" / "train.log").read_text()
    assert "resuming from" in log and "(iteration 4)" in log  # killed at the start of step 5 of 8
    final, expected = (read_checkpoint(tmp_path / name / "latest.pth") for name in ("killed", "reference"))
    assert final["iteration"] == expected["iteration"] == 8
    assert_same_state(final["model"], expected["model"])
    assert final["sampler"]["drawn"] == expected["sampler"]["drawn"] == [12, 4]
    assert drawn(tmp_path / "killed") == drawn(tmp_path / "reference")
