"""Does the camera help? Three students on synthetic scenes seen through 30-90 degree cameras:

    A: no camera (also the teacher of C)
    B: camera intrinsics, no zoom augmentation
    C: camera intrinsics + zoom augmentation, distilled from A

Each is evaluated on a test split of new scenes and new cameras: abs_rel, d1 and zoom_slope
(d log depth / d log zoom: 0 = camera-aware, -1 = depth read from apparent size alone).

    python experiments/focal_experiment.py                     # 2 seeds, about 35 minutes on 2 CPU cores
    python experiments/focal_experiment.py --seeds 0 --quick   # a smoke run of a few minutes

Writes experiments/results/focal_experiment.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataset.synthetic import write_synthetic_dataset  # noqa: E402

METRICS = ("abs_rel", "d1", "zoom_slope")


def run(command: list[str], log: Path, threads: int) -> None:
    print("$ " + " ".join(shlex.quote(c) for c in command), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(log, "a") as f:
        subprocess.run(command, check=True, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)


def train_and_eval(name: str, extra: list[str], cfg: dict, work: Path, log: Path) -> dict:
    """Train one variant, then evaluate its last checkpoint on the test split; returns the eval metrics."""
    py, save = sys.executable, work / name
    common = ["--encoder", "vits", "--img-size", str(cfg["crop"]), "--max-depth", "20", "--bs", str(cfg["bs"]),
              "--workers", "0", "--precision", "bf16", "--device", "cpu", "--seed", str(cfg["seed"]),
              "--log-interval", "20", "--zoom-factor", "2"]  # fmt: skip
    run([py, "train.py", *common, "--dataset", str(work / "train_data"), "--save-path", str(save),
         "--eval-interval", "1000", *extra], log, cfg["threads"])  # fmt: skip
    camera = ["--use-camera-intrinsics"] if "--use-camera-intrinsics" in extra else []
    run([py, "train.py", *common, *camera, "--dataset", str(work / "test_data"), "--eval-only",
         "--pretrained-from", str(save / "latest.pth"), "--save-path", str(save / "test_eval")],
        log, cfg["threads"])  # fmt: skip
    return json.loads((save / "test_eval" / "eval.json").read_text())


def one_seed(seed: int, cfg: dict, work: Path, log: Path) -> dict[str, dict]:
    work.mkdir(parents=True, exist_ok=True)
    size = (cfg["width"], cfg["height"])
    write_synthetic_dataset(work / "train_data", cfg["n_train"], 16, size, hfov_range=(30, 90), seed=100 + seed)
    write_synthetic_dataset(work / "test_data", 0, cfg["n_test"], size, val_hfov_range=(30, 90), seed=200 + seed)
    cfg = {**cfg, "seed": seed}
    a_ckpt = str(work / "A" / "latest.pth")
    scratch = ["--no-freeze-dinov2", "--lr", str(cfg["lr"]), "--epochs", str(cfg["epochs_a"])]
    finetune = ["--no-freeze-dinov2", "--lr", str(cfg["lr"] / 2), "--epochs", str(cfg["epochs_bc"]),
                "--pretrained-from", a_ckpt, "--use-camera-intrinsics"]  # fmt: skip
    return {
        "A": train_and_eval("A", scratch, cfg, work, log),
        "B": train_and_eval("B", [*finetune, "--no-zoom"], cfg, work, log),
        "C": train_and_eval("C", [*finetune, "--use-distillation", "--teacher-checkpoint", a_ckpt], cfg, work, log),
    }


def summarise(results: dict[int, dict]) -> dict:
    summary = {}
    for variant in ("A", "B", "C"):
        summary[variant] = {}
        for metric in METRICS:
            values = [results[seed][variant][metric] for seed in results]
            spread = max(values) - min(values) if len(values) > 1 else 0.0
            summary[variant][metric] = {"mean": statistics.fmean(values), "spread": spread, "values": values}
    a, c = summary["A"], summary["C"]
    summary["expectations"] = {
        "C |zoom_slope| <= 0.15": abs(c["zoom_slope"]["mean"]) <= 0.15,
        "A zoom_slope < -0.5": a["zoom_slope"]["mean"] < -0.5,
        "C abs_rel <= 0.7 x A abs_rel": c["abs_rel"]["mean"] <= 0.7 * a["abs_rel"]["mean"],
    }
    return summary


def markdown(summary: dict, seeds: list[int]) -> str:
    lines = [
        f"| model | abs_rel | d1 | zoom_slope |  (mean over seeds {seeds}; +- = max - min between seeds)",
        "|---|---|---|---|",
    ]
    names = {"A": "A: no camera (teacher)", "B": "B: camera, no zoom aug", "C": "C: camera + zoom aug + distill A"}
    for variant, label in names.items():
        cells = [f"{summary[variant][m]['mean']:.3f} +- {summary[variant][m]['spread']:.3f}" for m in METRICS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {rule}: {'yes' if ok else 'NO'}" for rule, ok in summary["expectations"].items()]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    """Grouped bars per metric (A, B, C) with the seed range as a line; drawn with OpenCV (no matplotlib)."""
    width, height, margin = 900, 360, 40
    canvas = np.full((height, width, 3), 255, np.uint8)
    colours = {"A": (80, 80, 220), "B": (60, 170, 240), "C": (90, 170, 60)}
    panel = (width - 2 * margin) // len(METRICS)
    for i, metric in enumerate(METRICS):
        x0 = margin + i * panel
        values = [v for variant in "ABC" for v in summary[variant][metric]["values"]]
        lo, hi = (
            min(0.0, *values, -1.0 if metric == "zoom_slope" else 0.0),
            max(0.0, *values, 1.0 if metric == "d1" else 0.0),
        )
        span = (hi - lo) or 1.0

        def y(value: float) -> int:
            return int(height - margin - (value - lo) / span * (height - 3 * margin))

        cv2.line(canvas, (x0 + 10, y(0)), (x0 + panel - 10, y(0)), (0, 0, 0), 1)
        for j, variant in enumerate("ABC"):
            stats = summary[variant][metric]
            bx = x0 + 30 + j * (panel - 60) // 3
            bw = (panel - 60) // 3 - 10
            cv2.rectangle(canvas, (bx, y(0)), (bx + bw, y(stats["mean"])), colours[variant], -1)
            cv2.line(
                canvas, (bx + bw // 2, y(min(stats["values"]))), (bx + bw // 2, y(max(stats["values"]))), (0, 0, 0), 2
            )
            cv2.putText(
                canvas, variant, (bx + bw // 2 - 6, height - margin + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1
            )
            label_y = y(stats["mean"]) - 4 if stats["mean"] >= 0 else y(stats["mean"]) + 14
            cv2.putText(canvas, f"{stats['mean']:.2f}", (bx, label_y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.putText(canvas, metric, (x0 + panel // 2 - 40, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.65, (0, 0, 0), 2)
    cv2.imwrite(str(path), canvas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (numbers meaningless)")
    parser.add_argument("--work", default="runs/focal_experiment", help="scratch folder for data and checkpoints")
    parser.add_argument("--out", default="experiments/results", help="where the json, md and png go")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run (1 on a busy machine)")
    args = parser.parse_args()
    cfg = {"n_train": 320, "n_test": 48, "width": 112, "height": 84, "crop": 70, "bs": 8, "lr": 2e-4,
           "epochs_a": 10, "epochs_bc": 5}  # fmt: skip
    cfg["threads"] = args.threads
    if args.quick:
        cfg.update(n_train=32, n_test=8, epochs_a=1, epochs_bc=1)
    work, out = REPO / args.work, REPO / args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    results = {seed: one_seed(seed, cfg, work / f"seed{seed}", work / f"seed{seed}.log") for seed in args.seeds}
    summary = summarise(results)
    record = {
        "config": cfg,
        "seeds": args.seeds,
        "minutes": (time.time() - start) / 60,
        "results": results,
        "summary": summary,
    }
    (out / "focal_experiment.json").write_text(json.dumps(record, indent=2))
    (out / "focal_experiment.md").write_text(markdown(summary, args.seeds))
    plot(summary, out / "focal_experiment.png")
    print(markdown(summary, args.seeds))
    print(f"{record['minutes']:.1f} minutes; results in {out}")


if __name__ == "__main__":
    main()
