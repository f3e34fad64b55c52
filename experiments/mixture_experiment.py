"""What does the camera buy on a mixture? Train on several cameras at once, test through held-out ones (issue 28).

Synthetic scenes of known metric size (dataset/synthetic.py) are rendered through three training cameras of
different fields of view and image sizes (TRAIN_CAMERAS, one dataset each, equal weights) and through four
held-out cameras (HELD_OUT: narrower than, between and wider than the training ones), which train.py evaluates
with `--eval-datasets` and never trains on. The camera-less model A (from random initialisation, the focal-blind
teacher) is compared with the camera-aware student C (camera intrinsics, zoom augmentation, distilled from A),
both trained on the same mixture, over 3 seeds: abs_rel, d1 and the zoom slope per held-out camera, from the
final evaluation in each run's metrics.jsonl (`eval/<label>/<metric>`).

    python experiments/mixture_experiment.py                  # --scale cpu: 3 seeds, A and C, 2 CPU cores
    python experiments/mixture_experiment.py --scale gpu      # a CUDA device: 2x image sizes, 5x scenes
    python experiments/mixture_experiment.py --scale smoke    # end-to-end check, numbers meaningless
    python experiments/mixture_experiment.py --real path/to/real_rgbd   # real frames as a 4th dataset

Runs go to runs/mixture/<scale>/seed<N>/{A,C}/ (a rerun reuses every finished run of the same command); results
to experiments/results/<name>.{json,md,png}, and the cpu and gpu scales rewrite the results block of
experiments/README.md (`--doc`). `python experiments/mixture_report.py RESULTS.json` rebuilds them.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataset.synthetic import write_synthetic_dataset  # noqa: E402
from experiments.focal_jobs import (  # noqa: E402
    CAMERA_MODELS,
    MAX_DEPTH,
    RECIPE_A,
    RECIPE_CAMERA,
    ZOOM_RANGE,
    Job,
    common_flags,
    run_jobs,
)
from experiments.mixture_report import write_outputs  # noqa: E402
from util.logger import read_metrics  # noqa: E402

SLOPE_ZOOM = 1.5  # the zoomed view of the narrowest held-out camera stays inside C's training zoom range


@dataclasses.dataclass(frozen=True)
class Camera:
    """A pinhole camera: horizontal field of view (degrees) and image size (pixels, before a scale's factor)."""

    label: str
    hfov: float
    width: int
    height: int

    def focal(self) -> float:
        """fx in units of the image's short side (what the network sees after the resize to its input)."""
        return (self.width / 2) / math.tan(math.radians(self.hfov) / 2) / min(self.width, self.height)


TRAIN_CAMERAS = (Camera("cam40", 40, 112, 84), Camera("cam60", 60, 98, 70), Camera("cam90", 90, 126, 84))
HELD_OUT = (Camera("test25", 25, 112, 84), Camera("test50", 50, 112, 84), Camera("test75", 75, 112, 84),
            Camera("test110", 110, 112, 84))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Scale:
    """One budget: image sizes x `size`, `crop` px crops, scenes per training camera (`n_train`, `n_val`) and per
    held-out camera (`n_test`), epochs over the mixture (its summed size / bs steps each), `jobs` train.py runs at
    once with `threads` torch threads each."""

    size: int
    crop: int
    n_train: int
    n_val: int
    n_test: int
    bs: int
    epochs_a: int
    epochs_c: int
    warmup_a: int
    warmup_c: int
    evals_a: int  # evaluations of A during training (its curve)
    seeds: tuple[int, ...]
    device: str
    workers: int
    jobs: int
    threads: int
    teacher_check: bool = True  # C's teacher (A) judged before training; the smoke run's A is barely trained


SCALES = {
    "smoke": Scale(size=1, crop=42, n_train=8, n_val=2, n_test=2, bs=4, epochs_a=1, epochs_c=1, warmup_a=1,
                   warmup_c=1, evals_a=1, seeds=(0,), device="cpu", workers=0, jobs=2, threads=1, teacher_check=False),
    "cpu": Scale(size=1, crop=70, n_train=240, n_val=16, n_test=24, bs=8, epochs_a=16, epochs_c=10, warmup_a=100,
                 warmup_c=50, evals_a=4, seeds=(0, 1, 2), device="cpu", workers=0, jobs=2, threads=1),
    "gpu": Scale(size=2, crop=168, n_train=1200, n_val=32, n_test=64, bs=16, epochs_a=30, epochs_c=20, warmup_a=200,
                 warmup_c=100, evals_a=6, seeds=(0, 1, 2), device="cuda", workers=4, jobs=2, threads=4),
}  # fmt: skip


def write_seed_data(work: Path, scale: Scale, seed: int, real: str | None) -> tuple[Path, Path, int]:
    """The seed's datasets and the two TOML mixtures (training, held-out); returns (train.toml, held_out.toml,
    training samples). New scenes and cameras (principal points jittered by 2 %) for every seed."""
    tables = {"train": [], "held_out": []}
    for kind, cameras, n_train, n_val in (("train", TRAIN_CAMERAS, scale.n_train, scale.n_val),
                                          ("held_out", HELD_OUT, 0, scale.n_test)):  # fmt: skip
        for i, camera in enumerate(cameras):
            folder = work / "data" / camera.label
            if not (folder / "splits" / "val.txt").is_file():
                size = (camera.width * scale.size, camera.height * scale.size)
                fov, data_seed = (camera.hfov, camera.hfov), 1000 * seed + 100 * (kind == "held_out") + i
                write_synthetic_dataset(folder, n_train, n_val, size, fov, seed=data_seed, principal_jitter=0.02)
            tables[kind].append(f'[[dataset]]\npath = "{folder}"\nlabel = "{camera.label}"\n')
    samples = scale.n_train * len(TRAIN_CAMERAS)
    if real:
        real_path = Path(real).resolve()
        tables["train"].append(f'[[dataset]]\npath = "{real_path}"\nlabel = "real"\nweight = 0.5\n'
                               f"max_depth = {MAX_DEPTH}\n")  # fmt: skip
        samples += len((real_path / "splits" / "train.txt").read_text().split("\n")) - 1
    paths = work / "train.toml", work / "held_out.toml"
    for path, kind in zip(paths, tables):
        path.write_text("\n".join(tables[kind]))
    return *paths, samples


def plan_seed(seed: int, scale: Scale, work: Path, mixture: Path, held_out: Path, samples: int) -> list[Job]:
    """A from scratch on the mixture, then C from A's weights, distilled from A."""
    per_epoch = samples // scale.bs
    common = [*common_flags(seed, scale.crop, scale.bs, scale.workers, scale.device, per_epoch, mixture),
              "--eval-datasets", str(held_out), "--zoom-factor", str(SLOPE_ZOOM)]  # fmt: skip
    a_args = [*common, *RECIPE_A, "--warmup-iters", str(scale.warmup_a), "--epochs", str(scale.epochs_a),
              "--eval-interval", str(max(1, scale.epochs_a // scale.evals_a))]  # fmt: skip
    a = Job(seed, "A", a_args, work / "A", scale.epochs_a * per_epoch)
    c_args = [*common, *RECIPE_CAMERA, "--no-freeze-dinov2", *CAMERA_MODELS["C"], "--warmup-iters",
              str(scale.warmup_c), "--epochs", str(scale.epochs_c), "--eval-interval", str(scale.epochs_c),
              "--pretrained-from", str(a.checkpoint), "--teacher-checkpoint", str(a.checkpoint)]  # fmt: skip
    if not scale.teacher_check:
        c_args.append("--no-teacher-check")
    return [a, Job(seed, "C", c_args, work / "C", scale.epochs_c * per_epoch, after="A")]


def read_run(metrics_jsonl: Path) -> dict:
    """The final evaluation ({label: {metric: value}}, `mean` included) and the curve ([step, mean abs_rel,
    held-out mean abs_rel]) of a run, from its metrics.jsonl."""
    evaluations = []
    for event in read_metrics(metrics_jsonl):
        if "eval/mean/abs_rel" in event:
            per_label: dict = {}
            for key, value in event.items():
                parts = key.split("/")
                if len(parts) == 3 and parts[0] == "eval":
                    per_label.setdefault(parts[1], {})[parts[2]] = value
            evaluations.append((event["step"], per_label))
    held = [c.label for c in HELD_OUT]
    curve = [[step, ev["mean"]["abs_rel"], sum(ev[h]["abs_rel"] for h in held) / len(held)] for step, ev in evaluations]
    return {"final": evaluations[-1][1], "curve": curve}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Scale]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu", help="budget (default: cpu)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the scale's (cpu, gpu: 0 1 2)")
    parser.add_argument("--device", help="override the scale's device (cpu | cuda | mps)")
    parser.add_argument("--jobs", type=int, help="train.py runs at once (default: the scale's, cpu: 2)")
    parser.add_argument("--threads", type=int, help="torch threads per run (cpu: 1)")
    parser.add_argument("--real", help="real RGB-D frames with K (a folder with splits/): a 4th training dataset")
    parser.add_argument("--work", help="scratch folder for data and runs (default: runs/mixture/<scale>)")
    parser.add_argument("--out", default=str(REPO / "experiments" / "results"), help="where the results go")
    parser.add_argument("--name", help="results file name (default: mixture, mixture_<scale>)")
    parser.add_argument("--doc", help="markdown file whose results block is rewritten (default: experiments/"
                        "README.md for the cpu and gpu scales, none for smoke; 'none': none)")  # fmt: skip
    args = parser.parse_args(argv)
    overrides = {"device": args.device, "jobs": args.jobs, "threads": args.threads}
    scale = dataclasses.replace(SCALES[args.scale], **{k: v for k, v in overrides.items() if v is not None})
    args.seeds = args.seeds or list(scale.seeds)
    args.work = Path(args.work or REPO / "runs" / "mixture" / args.scale)
    args.name = args.name or ("mixture" if args.scale == "cpu" else f"mixture_{args.scale}")
    if args.doc is None and args.scale != "smoke":
        args.doc = str(REPO / "experiments" / "README.md")
    args.doc = None if args.doc in (None, "none") else Path(args.doc)
    return args, scale


def main(argv: list[str] | None = None) -> None:
    """Write every seed's data, train all runs, then read their evaluations and write the results."""
    args, scale = parse_args(argv)
    cameras = {kind: [{**dataclasses.asdict(c), "focal": c.focal()} for c in group]
               for kind, group in (("train", TRAIN_CAMERAS), ("held_out", HELD_OUT))}  # fmt: skip
    record = {
        "name": args.name, "scale": args.scale, "config": dataclasses.asdict(scale), "seeds": args.seeds,
        "command": " ".join(shlex.quote(a) for a in ["python", "experiments/mixture_experiment.py", *sys.argv[1:]]),
        "design": {"cameras": cameras, "max_depth_m": MAX_DEPTH, "zoom_range": [float(z) for z in ZOOM_RANGE],
                   "slope_zoom": SLOPE_ZOOM, "recipe_a": RECIPE_A, "recipe_camera": RECIPE_CAMERA, "real": args.real},
        "load_average_start": os.getloadavg(), "seed_runs": {},
    }  # fmt: skip
    start, jobs = time.time(), []
    for seed in args.seeds:
        work = args.work / f"seed{seed}"
        work.mkdir(parents=True, exist_ok=True)
        jobs += plan_seed(seed, scale, work, *write_seed_data(work, scale, seed, args.real))
    record["data_minutes"] = (time.time() - start) / 60
    timing = run_jobs(sorted(jobs, key=lambda j: j.after is not None), scale.jobs, scale.threads, REPO)
    for job in jobs:
        run = record["seed_runs"].setdefault(str(job.seed), {"timing": []})
        run[job.key] = read_run(job.save / "metrics.jsonl")
    for row in timing:
        record["seed_runs"][str(row["seed"])]["timing"].append(row)
    record["minutes"] = (time.time() - start) / 60
    record["load_average_end"] = os.getloadavg()
    paths = write_outputs(record, Path(args.out), args.doc)
    print(f"done after {record['minutes']:.1f} minutes; wrote {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main()
