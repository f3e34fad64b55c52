"""Quick start on built-in demo data: synthetic scenes -> a camera-less teacher -> a camera-aware student distilled
from it -> depth maps of the validation scenes, each model checked against a constant predictor.

Every step is an ordinary command of this repo, printed before it runs. The last lines compare, on the validation
scenes, the constant predictor (every pixel at the training data's median depth), the teacher and the student.
The demo stops with status 1, saying why, when a model collapsed (the training monitor's verdict) or does not beat
the constant predictor.

    python demo.py                  # about 10 minutes on 2 CPU cores; results in demo_output/ (replaced on a rerun)
    python demo.py --size tiny      # the same commands at the smallest size (the tests)
    python demo.py --lr 1e-2        # an lr that diverges: the demo stops and names the collapse
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dataset.protocol import EvalProtocol
from dataset.registry import build_dataset
from depth_anything_v2.kernels import cpu_model
from depth_anything_v2.loading import build_model_from_checkpoint
from util.baseline import ConstantDepth, median_depth
from util.dist import DistInfo, resolve_device
from util.engine import evaluate
from util.logger import read_metrics
from util.monitor import CollapseMonitor, start_of

MAX_DEPTH = 20.0  # metres: the rooms are 3-10 m deep
ZOOM_RANGE = ("0.5", "2.0")  # the student's random zoom


# The demo scenes: synthetic rooms (dataset.synthetic) of 112 x 84 px through cameras of 30-90 degrees horizontal
# field of view; every size trains on the same scenes.
SCENES = {"n_train": 640, "n_val": 32, "width": 112, "height": 84, "hfov": (30, 90)}


@dataclass(frozen=True)
class Size:
    """How long each model trains: epochs over the 640 training scenes (80 steps of batch 8 each, on 70 px crops);
    the first `warmup_epochs` warm the learning rate up."""

    teacher_epochs: int
    student_epochs: int
    warmup_epochs: float


CROP, BATCH, LR = 70, 8, 5e-5  # training crop (px, a multiple of 14), batch, both models' backbone lr (head: 10x)
SIZES = {
    "tiny": Size(teacher_epochs=2, student_epochs=3, warmup_epochs=1),
    "default": Size(teacher_epochs=10, student_epochs=13, warmup_epochs=1),
}


REPO = Path(__file__).resolve().parent


def run(command: list[str]) -> float:
    """Run one command of this repo, printed first; returns its wall time in seconds."""
    print("\n$ " + " ".join(shlex.quote(c) for c in command), flush=True)
    start = time.time()
    subprocess.run(command, check=True, cwd=REPO)
    return time.time() - start


def collapse_of(run_dir: Path) -> str | None:
    """The training monitor's warning when a run's prediction was still collapsed at its last logged steps
    (replayed from its metrics.jsonl with the run's settings from its config.json), else None."""
    config = json.loads((run_dir / "config.json").read_text())
    monitor = CollapseMonitor(start=start_of(config.get("pretrained_from")), warmup_iters=config["warmup_iters"],
                              clip_grad=config["clip_grad"])  # fmt: skip
    warning = None
    for event in read_metrics(run_dir / "metrics.jsonl"):
        if "train/pred_spread" in event:
            spread, saturated = event["train/pred_spread"], event["train/pred_saturated"]
            warning = monitor.update(spread, saturated, config["lr"], event["step"]) or warning
    return warning if monitor.collapsed_steps >= monitor.patience else None


def last_abs_rel(run_dir: Path) -> float:
    """abs_rel of a run's last evaluation (metrics.jsonl)."""
    events = read_metrics(run_dir / "metrics.jsonl")
    return [e for e in events if "eval/abs_rel" in e][-1]["eval/abs_rel"]


def evaluate_models(scenes: Path, models: dict[str, nn.Module], device: torch.device) -> dict:
    """{name: validation metrics} of each model in fp32, by the evaluation train.py runs."""
    val_set = build_dataset(str(scenes), "val", (CROP, CROP), "val", max_depth=MAX_DEPTH)
    protocol = EvalProtocol("none", val_set.min_depth, MAX_DEPTH)
    options = argparse.Namespace(workers=0, precision="fp32", zoom_factor=2.0)
    info = DistInfo(0, 1, 0, device)
    return {name: evaluate(model.to(device), val_set, protocol, options, info) for name, model in models.items()}


def judge(name: str, run_dir: Path, constant_abs_rel: float) -> None:
    """Stop the demo (status 1) when the model of `run_dir` collapsed or does not beat the constant predictor."""
    warning = collapse_of(run_dir)
    if warning:
        raise SystemExit(f"\nFAILED: the {name} collapsed ({run_dir / 'train.log'}): {warning}")
    abs_rel = last_abs_rel(run_dir)
    if abs_rel >= constant_abs_rel:
        raise SystemExit(
            f"\nFAILED: the {name} does not beat the constant predictor on the validation scenes (abs_rel "
            f"{abs_rel:.3f} against {constant_abs_rel:.3f}): it learnt nothing useful; see {run_dir / 'train.log'}"
        )


def report(results: dict, times: dict, total_s: float, device: torch.device) -> None:
    """The comparison table and the time taken."""
    base = results["constant"]["abs_rel"]
    hfov = SCENES["hfov"]
    print(f"\nValidation: {SCENES['n_val']} new scenes through {hfov[0]}-{hfov[1]} degree cameras, {CROP} px")
    print(f"  {'model':<10}{'abs_rel':>9}{'d1':>8}{'zoom slope':>12}{'abs_rel / constant':>21}")
    for name, metrics in results.items():
        print(f"  {name:<10}{metrics['abs_rel']:>9.3f}{metrics['d1']:>8.3f}{metrics.get('zoom_slope', 0.0):>+12.3f}"
              f"{metrics['abs_rel'] / base:>21.2f}")  # fmt: skip
    print(
        "  zoom slope: d log depth / d log zoom for a 2x centre zoom with K updated (0: depth read through the "
        "camera; -1: from apparent size alone)"
    )
    where = cpu_model() if device.type == "cpu" else torch.cuda.get_device_name(device)
    stages = ", ".join(f"{name} {seconds / 60:.1f}" for name, seconds in times.items())
    threads = torch.get_num_threads()
    print(f"Time: {total_s / 60:.1f} min on {where}, {threads} thread{'s' * (threads > 1)} ({stages} min)")


def main(args: argparse.Namespace) -> None:
    size = SIZES[args.size]
    lr = LR if args.lr is None else args.lr
    py, started, times = sys.executable, time.time(), {}
    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    scenes = data / "scenes"
    if not (scenes / "splits" / "val.txt").exists():
        times["scenes"] = run([py, "-m", "dataset.synthetic", "--out", str(scenes), "--n-train",
                               str(SCENES["n_train"]), "--n-val", str(SCENES["n_val"]), "--width",
                               str(SCENES["width"]), "--height", str(SCENES["height"]), "--hfov",
                               *map(str, SCENES["hfov"])])  # fmt: skip
    device = resolve_device(args.device)
    train_median = median_depth(build_dataset(str(scenes), "train", (CROP, CROP), "val"))
    constant = evaluate_models(scenes, {"constant": ConstantDepth(train_median)}, device)["constant"]
    print(f"\nconstant predictor ({train_median:.2f} m everywhere, the training scenes' median depth): validation "
          f"abs_rel {constant['abs_rel']:.3f}, d1 {constant['d1']:.3f}; each model must beat it")  # fmt: skip
    steps = SCENES["n_train"] // BATCH
    common = ["--encoder", "vits", "--dataset", str(scenes), "--img-size", str(CROP), "--max-depth", f"{MAX_DEPTH:g}",
              "--bs", str(BATCH), "--workers", "1", "--precision", args.precision, "--device", args.device,
              "--log-interval", str(steps // 4), "--no-freeze-dinov2", "--lr", f"{lr:g}", "--clip-grad", "1.0",
              "--warmup-iters", str(round(size.warmup_epochs * steps)), "--overwrite"]  # fmt: skip
    teacher, student = out / "teacher", out / "student"
    times["teacher"] = run([py, "train.py", *common, "--epochs", str(size.teacher_epochs), "--eval-interval",
                            str(size.teacher_epochs), "--save-path", str(teacher)])  # fmt: skip
    judge("teacher", teacher, constant["abs_rel"])
    times["student"] = run([py, "train.py", *common, "--epochs", str(size.student_epochs), "--eval-interval",
                            str(size.student_epochs), "--pretrained-from", str(teacher / "latest.pth"),
                            "--use-camera-intrinsics", "--zoom-range", *ZOOM_RANGE, "--use-distillation",
                            "--teacher-checkpoint", str(teacher / "latest.pth"), "--cache-teacher", "--save-path",
                            str(student)])  # fmt: skip
    judge("student", student, constant["abs_rel"])
    images = out / "val_images.txt"
    lines = (scenes / "splits" / "val.txt").read_text().split("\n")
    images.write_text("\n".join(str((scenes / line.split()[0]).resolve()) for line in lines if line.strip()) + "\n")
    times["depth maps"] = run([py, "run.py", "--load-from", str(student / "latest.pth"), "--img-path", str(images),
                               "--outdir", str(out / "depth"), "--input-size", str(CROP), "--intrinsics",
                               str(scenes / "intrinsics"), "--save-numpy", "--device", args.device])  # fmt: skip
    models = {name: build_model_from_checkpoint(folder / "latest.pth", device) for name, folder in
              (("teacher", teacher), ("student", student))}  # fmt: skip
    results = {"constant": constant, **evaluate_models(scenes, models, device)}
    total_s = time.time() - started
    report(results, times, total_s, device)
    summary = {"metrics": results, "minutes": {k: v / 60 for k, v in times.items()}, "total_minutes": total_s / 60}
    (out / "summary.json").write_text(json.dumps({**summary, "cpu": cpu_model()}, indent=2))
    print(f"Checkpoints in {teacher} and {student}, depth maps of the validation scenes in {out / 'depth'}")
    print(
        f"Done: the student's abs_rel is {results['student']['abs_rel'] / constant['abs_rel']:.2f}x the constant "
        f"predictor's and {results['student']['abs_rel'] / results['teacher']['abs_rel']:.2f}x the teacher's"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="default", choices=sorted(SIZES))
    parser.add_argument("--data", default="demo_data", help="where the synthetic scenes are generated")
    parser.add_argument("--out", default="demo_output", help="checkpoints and depth maps (replaced on a rerun)")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="train.py --precision; auto: bf16 where the device runs it natively, else fp32",
    )
    parser.add_argument("--lr", type=float, help=f"both models' backbone learning rate (default {LR:g}; head: 10x)")
    parser.add_argument("--device", default="auto")
    main(parser.parse_args())
