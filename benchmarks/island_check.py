"""Does the head's fp32 island change what bf16 training produces? Short seeded runs of the quick start's teacher
recipe (vits from random weights, 70 px crops of synthetic rooms, batch 8, bf16), each seed trained twice: with the
island off (train.py's default) and on (--fp32-head-island); the validation metrics of each run, the difference per
seed and the spread between seeds, into a markdown table.

    python benchmarks/island_check.py --out benchmarks/island_results.md          # 3 seeds x 2 runs
    python benchmarks/island_check.py --seeds 0 --epochs 1 --out /tmp/island.md   # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depth_anything_v2.kernels import cpu_model  # noqa: E402
from util.logger import read_metrics  # noqa: E402

METRICS = ("abs_rel", "d1", "rmse")


def train_run(scenes: Path, save: Path, seed: int, epochs: int, island: bool, device: str) -> dict[str, float]:
    """One train.py run of the teacher recipe; its final validation metrics (metrics.jsonl)."""
    command = [
        sys.executable, "train.py", "--encoder", "vits", "--dataset", str(scenes), "--img-size", "70",
        "--max-depth", "20", "--bs", "8", "--workers", "0", "--precision", "bf16", "--device", device,
        "--seed", str(seed), "--no-freeze-dinov2", "--lr", "5e-5", "--clip-grad", "1.0", "--warmup-iters", "80",
        "--epochs", str(epochs), "--eval-interval", str(epochs), "--log-interval", "40", "--save-path", str(save),
        "--overwrite", *(["--fp32-head-island"] if island else []),
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    events = read_metrics(save / "metrics.jsonl")
    last = [e for e in events if "eval/abs_rel" in e][-1]
    return {m: last[f"eval/{m}"] for m in METRICS}


def table(rows: list[dict], header: str) -> str:
    """Per seed: each metric with the island off and on and their difference; then the seed spread."""
    lines = [header, "", "| seed | island | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for row in rows:
        for name in ("off", "on"):
            lines.append(f"| {row['seed']} | {name} | " + " | ".join(f"{row[name][m]:.4f}" for m in METRICS) + " |")
        lines.append(f"| {row['seed']} | on - off | " + " | ".join(f"{row['on'][m] - row['off'][m]:+.4f}" for m in
                                                                       METRICS) + " |")  # fmt: skip
    if len(rows) > 1:
        spread = {m: max(r["off"][m] for r in rows) - min(r["off"][m] for r in rows) for m in METRICS}
        mean_diff = {m: statistics.mean(r["on"][m] - r["off"][m] for r in rows) for m in METRICS}
        lines += [
            "",
            "Seed noise (max - min over the seeds, island off): "
            + ", ".join(f"{m} {spread[m]:.4f}" for m in METRICS)
            + ". Mean difference on - off: "
            + ", ".join(f"{m} {mean_diff[m]:+.4f}" for m in METRICS)
            + ".",
        ]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> None:
    work = Path(args.work).resolve()
    scenes = work / "scenes"
    if not (scenes / "splits" / "val.txt").is_file():
        subprocess.run([sys.executable, "-m", "dataset.synthetic", "--out", str(scenes), "--n-train", "640",
                        "--n-val", "32", "--width", "112", "--height", "84", "--hfov", "30", "90"],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
    rows, started = [], time.time()
    for seed in args.seeds:
        row = {"seed": seed}
        for name, island in (("off", False), ("on", True)):
            row[name] = train_run(scenes, work / f"seed{seed}_{name}", seed, args.epochs, island, args.device)
            print(f"seed {seed} island {name}: " + ", ".join(f"{m} {v:.4f}" for m, v in row[name].items()), flush=True)
        rows.append(row)
    header = (
        f"Command: `python benchmarks/island_check.py {' '.join(sys.argv[1:])}`  \n"
        f"{time.strftime('%Y-%m-%d')}, {cpu_model()}, {args.epochs} epochs of 80 steps per run (vits from random "
        f"weights, 70 px, batch 8, bf16, 640 synthetic rooms; validation: 32 new rooms), "
        f"{(time.time() - started) / 60:.0f} min in all."
    )
    text = table(rows, header)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2, help="epochs of 80 steps per run")
    parser.add_argument("--work", default="runs/island_check", help="scenes and runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="markdown table (and .json beside it)")
    main(parser.parse_args())
