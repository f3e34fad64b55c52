"""Does the camera help? Train on ONE camera, test through others (issue 21).

Synthetic scenes of known metric size (dataset/synthetic.py) are rendered through a single 60 degree camera for
training, and new scenes through cameras of 25 to 110 degrees for testing, in bins of focal ratio f_test / f_train
(0.40 to 2.60). That is the situation of Depth Anything V2's metric models, trained on one camera family and run
through other lenses. Models (vits, from random initialisation; B, C, D start from A's weights):

    A: no camera, no zoom (the focal-blind teacher)
    B: camera intrinsics, no zoom augmentation (sees one K only)
    C: camera intrinsics + zoom augmentation 0.4-2.5 + distilled from A (cached teacher)
    D: C without the distillation (optional)

B, C, D are trained with the backbone trained (`--backbone trained`) and/or frozen (`--backbone frozen`, the
guide's recipe). Per model and focal-ratio bin: abs_rel, d1, median(pred / true) (a focal-blind model follows
1 / ratio), zoom slope; a constant median-depth predictor as a baseline; A's training curve; seeds with spread.

    python experiments/focal_experiment.py                  # --scale cpu: 3 seeds, A B C, 2 CPU cores
    python experiments/focal_experiment.py --scale gpu      # larger crops, more steps, all models and recipes
    python experiments/focal_experiment.py --scale smoke    # end-to-end check, numbers meaningless
    python experiments/focal_experiment.py --real path/to/real_rgbd   # also real frames (A and C)

train.py runs as a subprocess, `--jobs` at once with `--threads` torch threads each (cpu: 2 x 1, since small
tensors gain little from a second thread and two threads per process stall when the other core is busy); runs
go to runs/focal_single_camera/<scale>/seed<N>/, and a rerun reuses every finished run of the same command.
The evaluation (experiments/focal_eval.py) runs in this process. Writes experiments/results/<name>.json (every
number per seed, model, bin and test image), <name>.md (tables, the issue's expectations, A's training curve,
timing), <name>.png (abs_rel and median scale against the focal ratio, A's curve) and <name>_example.png.
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

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataset import GenericDatasetWithIntrinsics  # noqa: E402
from dataset.synthetic import write_synthetic_dataset  # noqa: E402
from experiments.focal_eval import (  # noqa: E402
    evaluate_bins,
    evaluate_split,
    focal_bins,
    model_predictor,
    real_camera_lists,
    write_test_bins,
)
from experiments.focal_jobs import (  # noqa: E402
    CAMERA_MODELS,
    MAX_DEPTH,
    RECIPE_A,
    RECIPE_CAMERA,
    SCALES,
    SLOPE_ZOOM,
    ZOOM_RANGE,
    Job,
    Scale,
    plan_seed,
    run_jobs,
)
from experiments.focal_report import read_curve, write_outputs  # noqa: E402
from util.baseline import ConstantDepth, median_depth  # noqa: E402

TRAIN_HFOV = 60.0  # degrees, the one training camera
TEST_HFOV = (25.0, 110.0)  # degrees, the test cameras


def prepare_seed(seed: int, scale: Scale, args: argparse.Namespace, bins: list) -> tuple[list[Job], list[Path]]:
    """Write the seed's training scenes (one camera, principal point at the centre) and test scenes (one list per
    focal-ratio bin); returns its train.py jobs and the test lists."""
    work = Path(args.work) / f"seed{seed}"
    size, train_data = (scale.width, scale.height), work / "train_data"
    if not (train_data / "splits" / "val.txt").is_file():
        write_synthetic_dataset(train_data, scale.n_train, scale.n_val, size, (TRAIN_HFOV, TRAIN_HFOV),
                                seed=1000 + seed, principal_jitter=0.0)  # fmt: skip
    lists = write_test_bins(work / "test_data", bins, scale.per_bin, size, TRAIN_HFOV, seed=2000 + seed)
    return plan_seed(seed, scale, args.models, args.backbone, train_data, work), lists


def evaluate_seed(jobs: list[Job], lists: list[Path], scale: Scale, args: argparse.Namespace, examples: dict) -> dict:
    """Every trained model and the constant baseline on the test bins (and A and C on real frames with --real):
    {results, curve (A's), real}. The first seed's example images go into `examples`."""
    device, seed = torch.device(scale.device), jobs[0].seed
    f_train = (scale.width / 2) / math.tan(math.radians(TRAIN_HFOV / 2)) / min(scale.width, scale.height)
    options = {
        "size": scale.crop,
        "f_train": f_train,
        "depth_range": (1e-3, MAX_DEPTH),
        "zoom": SLOPE_ZOOM,
        "device": device,
    }
    train_list = Path(args.work) / f"seed{seed}" / "train_data" / "splits" / "train.txt"
    train_median = median_depth(GenericDatasetWithIntrinsics(train_list, mode="val", size=(scale.crop, scale.crop)))
    results = {"constant": evaluate_bins(ConstantDepth(train_median), lists, **options)[0]}
    predictors = {job.key: model_predictor(job.checkpoint, device, "bf16") for job in jobs}
    for key, predict in predictors.items():
        results[key], bin_examples = evaluate_bins(predict, lists, **options)
        if seed == args.seeds[0]:
            examples[key] = bin_examples
    real = {}
    if args.real:
        cameras = real_camera_lists(Path(args.real), Path(args.work) / f"seed{seed}" / "real")
        for key in (k for k in predictors if k.startswith(("A", "C"))):
            real[key] = {label: evaluate_split(predictors[key], path, **options)[0] for label, path in cameras.items()}
    return {"results": results, "curve": read_curve(jobs[0].save / "metrics.jsonl"), "real": real}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Scale]:
    """The command line and the scale it selects, with its overrides applied."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu", help="budget (default: cpu)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the scale's (cpu, gpu: 0 1 2)")
    parser.add_argument("--models", nargs="+", choices=("A", *CAMERA_MODELS), help="default: the scale's; A always")
    parser.add_argument("--backbone", nargs="+", choices=("trained", "frozen"),
                        help="B, C, D with the backbone trained and/or frozen (default: the scale's)")  # fmt: skip
    parser.add_argument("--epochs-a", type=int, help="override the scale's epochs of A (pilots)")
    parser.add_argument("--epochs-cam", type=int, help="override the scale's epochs of B, C, D (pilots)")
    parser.add_argument("--device", help="override the scale's device (cpu | cuda | mps)")
    parser.add_argument("--jobs", type=int, help="train.py runs at once (default: the scale's, cpu: 2)")
    parser.add_argument("--threads", type=int, help="torch threads per run and for the evaluation (cpu: 1)")
    parser.add_argument("--real", help="real RGB-D frames with K (a list, or a folder with splits/): A and C on them")
    parser.add_argument("--work", help="scratch folder for data and runs (default: runs/focal_single_camera/<scale>)")
    parser.add_argument("--out", default=str(REPO / "experiments" / "results"), help="where the results go")
    parser.add_argument("--name", help="results file name (default: single_camera, single_camera_<scale>)")
    args = parser.parse_args(argv)
    overrides = {"epochs_a": args.epochs_a, "epochs_cam": args.epochs_cam, "device": args.device, "jobs": args.jobs,
                 "threads": args.threads}  # fmt: skip
    scale = dataclasses.replace(SCALES[args.scale], **{k: v for k, v in overrides.items() if v is not None})
    args.seeds = args.seeds or list(scale.seeds)
    args.models = ["A", *sorted(set(args.models or scale.models) - {"A"})]
    args.backbone = args.backbone or list(scale.backbones)
    args.work = args.work or str(REPO / "runs" / "focal_single_camera" / args.scale)
    args.name = args.name or ("single_camera" if args.scale == "cpu" else f"single_camera_{args.scale}")
    return args, scale


def main(argv: list[str] | None = None) -> None:
    """Write the data of every seed, train all runs, then evaluate and write the results after each seed."""
    args, scale = parse_args(argv)
    torch.set_num_threads(scale.threads)
    bins = focal_bins(TRAIN_HFOV, TEST_HFOV, scale.n_bins)
    record = {
        "name": args.name,
        "command": " ".join(shlex.quote(a) for a in ["python", "experiments/focal_experiment.py", *sys.argv[1:]]),
        "scale": args.scale,
        "config": dataclasses.asdict(scale),
        "design": {"train_hfov_deg": TRAIN_HFOV, "test_hfov_deg": TEST_HFOV, "max_depth_m": MAX_DEPTH,
                   "zoom_range": [float(z) for z in ZOOM_RANGE], "slope_zoom": SLOPE_ZOOM,
                   "recipe_a": RECIPE_A, "recipe_camera": RECIPE_CAMERA},
        "bins": [{"lo": b.lo, "hi": b.hi, "label": b.label, "centre": b.centre} for b in bins],
        "seeds": args.seeds, "models": args.models, "backbones": args.backbone, "real_source": args.real,
        "load_average_start": os.getloadavg(), "seed_runs": {}, "complete": False,
    }  # fmt: skip
    start, examples = time.time(), {}
    planned = {seed: prepare_seed(seed, scale, args, bins) for seed in args.seeds}
    record["data_minutes"] = (time.time() - start) / 60
    # Every seed's A first (B, C, D wait for their A), so that parallel jobs start B, C, D as early as possible.
    jobs = sorted((job for seed_jobs, _ in planned.values() for job in seed_jobs), key=lambda j: j.after is not None)
    timing = run_jobs(jobs, scale.jobs, scale.threads, REPO)
    record["train_minutes"] = (time.time() - start) / 60 - record["data_minutes"]
    for seed, (seed_jobs, lists) in planned.items():
        began = time.time()
        run = evaluate_seed(seed_jobs, lists, scale, args, examples)
        run["timing"] = [t for t in timing if t["seed"] == seed] + [
            {"model": "evaluation", "wall_s": time.time() - began}
        ]
        record["seed_runs"][str(seed)] = run
        record["minutes"] = (time.time() - start) / 60
        record["complete"] = seed == args.seeds[-1]
        record["load_average_end"] = os.getloadavg()
        paths = write_outputs(record, examples, Path(args.out))
        print(f"seed {seed} evaluated after {record['minutes']:.1f} minutes; wrote {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main()
