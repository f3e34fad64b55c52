"""Report of the single-camera experiment: summary over seeds, the expectations of issue 21, markdown and json.

Rebuild the .md, the .png and the summary in the .json from a results file, without training or evaluating (the
example figure needs the models and stays as it is):

    python experiments/focal_report.py experiments/results/single_camera.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

if __name__ == "__main__":  # run as a script: the repository's packages import from its root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.focal_jobs import SLOPE_ZOOM, ZOOM_RANGE, model_key  # noqa: E402
from experiments.focal_plot import plot_examples, plot_results  # noqa: E402
from util.logger import read_metrics  # noqa: E402

BIN_METRICS = ("abs_rel", "d1", "median_scale", "zoom_slope")
ALL_METRICS = (*BIN_METRICS, "scale_slope")
TABLE_METRICS = ("abs_rel", "d1", "median_scale", "zoom_slope", "zoom_slope_in_range", "scale_slope")
TITLES = {"abs_rel": "abs_rel", "d1": "d1", "median_scale": "median(pred / true)", "zoom_slope": "zoom slope",
          "zoom_slope_in_range": "zoom slope, in range", "scale_slope": "scale slope"}  # fmt: skip
DERIVED = ("summary", "expectations", "real_summary")  # keys of the .json that write_report computes
BASE_LABELS = {
    "constant": "constant: median training depth",
    "A": "A: no camera, no zoom (teacher)",
    "B": "B: camera, no zoom",
    "C": "C: camera + zoom 0.4-2.5 + distill A",
    "D": "D: camera + zoom 0.4-2.5, no distill",
}


def model_label(key: str) -> str:
    """Table label of a model key ('C_frozen': C with the frozen backbone)."""
    model, _, backbone = key.partition("_")
    return BASE_LABELS[model] + (f", {backbone} backbone" if backbone else "")


def read_curve(metrics_jsonl: Path) -> dict[str, list[list[float]]]:
    """A training run's curve from its metrics.jsonl: train [step, loss, pred_spread] per logged step and eval
    [step, abs_rel, d1, zoom_slope] per evaluation (validation scenes through the training camera)."""
    train, evaluation = [], []
    for event in read_metrics(metrics_jsonl):
        if "train/loss" in event:
            train.append([event["step"], event["train/loss"], event.get("train/pred_spread", math.nan)])
        if "eval/abs_rel" in event:
            row = [event["eval/abs_rel"], event["eval/d1"], event.get("eval/zoom_slope", math.nan)]
            evaluation.append([event["step"], *row])
    return {"train": train, "eval": evaluation}


def _stats(values: list[float]) -> dict:
    finite = [v for v in values if math.isfinite(v)]
    mean = float(np.mean(finite)) if finite else math.nan
    spread = float(max(finite) - min(finite)) if len(finite) > 1 else 0.0
    return {"mean": mean, "spread": spread, "values": values}


def slope_range(record: dict) -> tuple[tuple[float, float], float]:
    """((lo, hi) focal ratios the camera models were trained with, the zoom factor z of the zoom slope) of a run:
    its recorded design, else (older results) the experiment's settings."""
    design = record["design"]
    lo, hi = design.get("zoom_range", ZOOM_RANGE)
    return (float(lo), float(hi)), float(design.get("slope_zoom", SLOPE_ZOOM))


def in_range(ratios, zoom: float, zoom_range: tuple[float, float]) -> np.ndarray:
    """Which test images have both views of their zoom slope, ratio r and the zoomed r * zoom, inside the range of
    focal ratios the camera models were trained with (bool per image)."""
    r = np.asarray(ratios, dtype=float)
    return (r >= zoom_range[0]) & (r <= zoom_range[1]) & (r * zoom >= zoom_range[0]) & (r * zoom <= zoom_range[1])


def in_range_slope(result: dict, zoom: float, zoom_range: tuple[float, float]) -> tuple[float, int]:
    """(mean zoom slope, number of images) over a model's test images of every bin that are `in_range`."""
    images = [b["per_image"] for b in result["bins"]]
    slopes = np.array([v for p in images for v in p["zoom_slope"]], dtype=float)
    keep = in_range([v for p in images for v in p["focal_ratio"]], zoom, zoom_range) & np.isfinite(slopes)
    return (float(slopes[keep].mean()) if keep.any() else math.nan), int(keep.sum())


def summarise(record: dict) -> dict:
    """{model key: {"bins": [{metric: {mean, spread (max - min), values (per seed)}}], "all": {...}}} over the
    seeds done so far, for the keys every one of them has. "all" also holds zoom_slope_in_range (`in_range_slope`)
    and n_in_range (its images per seed)."""
    runs = [run["results"] for run in record["seed_runs"].values()]
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    zoom_range, zoom = slope_range(record)
    summary = {}
    for key in keys:
        bins = [
            {m: _stats([r[key]["bins"][i][m] for r in runs]) for m in BIN_METRICS} for i in range(len(record["bins"]))
        ]
        summary[key] = {"bins": bins, "all": {m: _stats([r[key]["all"][m] for r in runs]) for m in ALL_METRICS}}
        slopes, counts = zip(*(in_range_slope(r[key], zoom, zoom_range) for r in runs))
        summary[key]["all"].update(zoom_slope_in_range=_stats(list(slopes)), n_in_range=_stats(list(counts)))
    return summary


def expectations(summary: dict, backbones: list[str]) -> list[tuple[str, bool | None, str]]:
    """The expectations of issue 21 as (statement, holds (None: a model is missing), the numbers)."""

    def mean(key: str, metric: str, where: str | int = "all") -> float:
        part = summary[key]["all"] if where == "all" else summary[key]["bins"][where]
        return part[metric]["mean"]

    checks: list[tuple[str, bool | None, str]] = []
    if "A" in summary:
        zs, ss = mean("A", "zoom_slope"), mean("A", "scale_slope")
        checks.append(("A's scale follows the focal ratio: zoom slope <= -0.6", zs <= -0.6,
                       f"A zoom slope {zs:+.3f}, scale slope across bins {ss:+.3f} (focal-blind: -1)"))  # fmt: skip
    for backbone in backbones:
        c, b = model_key("C", backbone), model_key("B", backbone)
        if not {"A", c} <= summary.keys():
            continue
        zs, zr = mean(c, "zoom_slope"), mean(c, "zoom_slope_in_range")
        checks.append((f"{c}: |zoom slope| <= 0.15, all test images", abs(zs) <= 0.15, f"{c} zoom slope {zs:+.3f}"))
        checks.append((f"{c}: |zoom slope| <= 0.15, in-range test images only", abs(zr) <= 0.15,
                       f"{c} zoom slope in range {zr:+.3f}, all images {zs:+.3f}"))  # fmt: skip
        ratios = [mean(c, "abs_rel", i) / mean("A", "abs_rel", i) for i in (0, -1)]
        checks.append((f"{c}: abs_rel on the outermost bins <= 0.5x A's", max(ratios) <= 0.5,
                       f"{c} / A abs_rel: {ratios[0]:.2f} (lowest ratio bin), {ratios[1]:.2f} (highest)"))  # fmt: skip
        if b in summary:
            values = {k: (mean(k, "abs_rel"), abs(mean(k, "zoom_slope"))) for k in ("A", b, c)}
            between = all(values[c][i] <= values[b][i] <= values["A"][i] for i in (0, 1))
            numbers = ", ".join(f"{k} {v[0]:.3f} / {v[1]:.3f}" for k, v in values.items())
            checks.append((f"{b} in between A and {c} (abs_rel and |zoom slope|)", between, numbers))
    base = mean("constant", "abs_rel")
    for key in (k for k in summary if k != "constant"):
        value = mean(key, "abs_rel")
        checks.append((f"{key} beats the constant predictor (abs_rel)", value < base, f"{value:.3f} vs {base:.3f}"))
    return checks


def _cell(stats: dict, seeds: int) -> str:
    return f"{stats['mean']:.3f}" + (f" +- {stats['spread']:.3f}" if seeds > 1 else "")


def real_summary(record: dict) -> dict:
    """Real frames: {camera: {"focal_ratio", "frames", model key: mean median scale, "<key>/A": mean ratio of the
    key's median scale to A's}} over seeds, and {"slopes": {key: slope of log scale on log focal ratio}}."""
    runs = [run["real"] for run in record["seed_runs"].values() if run["real"]]
    if not runs:
        return {}
    cameras: dict = {}
    for label in runs[0]["A"]:
        row = {"focal_ratio": runs[0]["A"][label]["focal_ratio"], "frames": runs[0]["A"][label]["n_images"]}
        for key in runs[0]:
            scales = [r[key][label]["median_scale"] for r in runs]
            row[key] = float(np.mean(scales))
            if key != "A":
                row[f"{key}/A"] = float(np.mean([s / r["A"][label]["median_scale"] for s, r in zip(scales, runs)]))
        cameras[label] = row
    log_r = np.log([row["focal_ratio"] for row in cameras.values()])
    slopes = {}
    for key in (k for k in next(iter(cameras.values())) if k not in ("focal_ratio", "frames")):
        if len(cameras) > 1 and np.ptp(log_r) > 1e-6:
            slopes[key] = float(np.polyfit(log_r, np.log([row[key] for row in cameras.values()]), 1)[0])
    return {"cameras": cameras, "slopes": slopes}


def in_range_note(record: dict, summary: dict) -> str:
    """The sentence under the all-images table that says what "in range" means, with the number of test images in
    range per seed (by focal ratio, before any model's non-finite slopes are left out)."""
    (lo, hi), zoom = slope_range(record)
    images = [
        [b["per_image"] for b in run["results"][next(iter(summary))]["bins"]] for run in record["seed_runs"].values()
    ]
    ratios = [[r for p in seed for r in p["focal_ratio"]] for seed in images]
    counts = ", ".join(str(int(in_range(r, zoom, (lo, hi)).sum())) for r in ratios)
    totals = ", ".join(str(len(r)) for r in ratios)
    return (
        f"The zoom slope compares each test image with its centre {zoom:g}x zoom: the zoomed view of an image of "
        f"focal ratio r shows ratio {zoom:g}r; for r > {hi / zoom:.2f} that lies beyond the largest training zoom "
        f"{hi:g}, so the slope there measures extrapolation. *zoom slope* is the mean over all test images; "
        f"*zoom slope, in range* the mean over the images whose two views both lie in the camera models' training "
        f"zoom range {lo:g}-{hi:g} ({lo:g} <= r and {zoom:g}r <= {hi:g}): {counts} of {totals} images per seed."
    )


def markdown(record: dict, summary: dict, checks: list, real: dict) -> str:
    seeds, labels = len(record["seed_runs"]), [b["label"] for b in record["bins"]]
    design = record["design"]
    spread = "; +- = max - min between seeds" if seeds > 1 else ""
    lines = [f"# Single-camera focal experiment: {record['name']}", "",
             f"`{record['command']}` (scale {record['scale']}); seeds {list(record['seed_runs'])}"
             f"{'' if record['complete'] else ' (incomplete)'}; {record['minutes']:.1f} minutes; load average "
             f"{record['load_average_start'][0]:.1f} at start, {record['load_average_end'][0]:.1f} at the end.", "",
             f"Training: one camera, {design['train_hfov_deg']:.0f} degree horizontal field of view. Test: new "
             f"scenes through {design['test_hfov_deg'][0]:.0f}-{design['test_hfov_deg'][1]:.0f} degree cameras, "
             "binned by focal ratio f_test / f_train. Means over seeds" + spread + ".", "",
             "## All test images", "", "| model | " + " | ".join(TITLES[m] for m in TABLE_METRICS) + " |",
             "|---" * (len(TABLE_METRICS) + 1) + "|"]  # fmt: skip
    for key, value in summary.items():
        cells = [_cell(value["all"][m], seeds) for m in TABLE_METRICS]
        lines.append(f"| {model_label(key)} | " + " | ".join(cells) + " |")
    lines += ["", in_range_note(record, summary)]
    for metric in BIN_METRICS:
        lines += ["", f"## {TITLES[metric]} per focal-ratio bin", "", "| model | " + " | ".join(labels) + " |",
                  "|---" * (len(labels) + 1) + "|"]  # fmt: skip
        for key, value in summary.items():
            lines.append(f"| {model_label(key)} | " + " | ".join(_cell(b[metric], seeds) for b in value["bins"]) + " |")
        if metric == "median_scale":
            lines.append("| focal-blind reference: 1 / ratio | " + " | ".join(
                f"{1 / b['centre']:.3f}" for b in record["bins"]) + " |")  # fmt: skip
        if metric == "zoom_slope":
            zoom = slope_range(record)[1]
            lines.append(f"| ratio of the {zoom:g}x zoomed view | " + " | ".join(
                f"{b['lo'] * zoom:.2f}-{b['hi'] * zoom:.2f}" for b in record["bins"]) + " |")  # fmt: skip
    lines += ["", "## Expectations (issue 21)", ""]
    lines += [f"- {text}: {'n/a' if ok is None else 'yes' if ok else 'NO'} ({numbers})" for text, ok, numbers in checks]
    lines += ["", "## A's training curve (validation scenes through the training camera)", "",
              "| seed | step | abs_rel | d1 | zoom slope |", "|---|---|---|---|---|"]  # fmt: skip
    for seed, run in record["seed_runs"].items():
        lines += [f"| {seed} | {s} | {a:.3f} | {d:.3f} | {z:+.3f} |" for s, a, d, z in run["curve"]["eval"]]
    if real:
        keys = [k for k in next(iter(real["cameras"].values())) if k not in ("focal_ratio", "frames")]
        lines += [
            "",
            "## Real frames: median(pred / true) per camera",
            "",
            "| camera | frames | focal ratio | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 3) + "|",
        ]
        for label, row in real["cameras"].items():
            cells = [f"{row[k]:.3f}" for k in keys]
            lines.append(f"| {label} | {row['frames']} | {row['focal_ratio']:.2f} | " + " | ".join(cells) + " |")
        lines.append("| slope on log focal ratio | | | " + " | ".join(
            f"{real['slopes'].get(k, math.nan):+.2f}" for k in keys) + " |")  # fmt: skip
    lines += [
        "",
        "## Timing",
        "",
        "| seed | run | wall min | CPU min | steps | wall s / step |",
        "|---|---|---|---|---|---|",
    ]
    for seed, run in record["seed_runs"].items():
        for t in run["timing"]:
            steps = t.get("steps")
            per_step = f"{t['wall_s'] / steps:.2f}" if steps else ""
            cpu = f"{t['cpu_s'] / 60:.1f}" if "cpu_s" in t else ""
            run_name = t["model"] + (" (reused)" if t.get("reused") else "")
            lines.append(f"| {seed} | {run_name} | {t['wall_s'] / 60:.1f} | {cpu} | {steps or ''} | {per_step} |")
    return "\n".join(lines) + "\n"


def write_report(record: dict, out: Path) -> list[Path]:
    """Write <name>.json (the record, the summary, the expectations), <name>.md and <name>.png into `out`; returns
    the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(record)
    checks = expectations(summary, record["backbones"])
    real = real_summary(record)
    full = {**record, "summary": summary, "expectations": [list(c) for c in checks], "real_summary": real}
    paths = [out / f"{record['name']}{suffix}" for suffix in (".json", ".md", ".png")]
    paths[0].write_text(json.dumps(full, indent=1, allow_nan=True))
    paths[1].write_text(markdown(record, summary, checks, real))
    plot_results(summary, record["bins"], {s: r["curve"] for s, r in record["seed_runs"].items()}, paths[2])
    return paths


def write_outputs(record: dict, examples: dict, out: Path) -> list[Path]:
    """`write_report`, and <name>_example.png from the example images of the first seed; returns the paths
    written."""
    paths = write_report(record, out)
    example = out / f"{record['name']}_example.png"
    first_seed = next(iter(record["seed_runs"].values()))
    return paths + [example] if plot_examples(examples, record["bins"], first_seed["results"], example) else paths


def rebuild(results: Path, out: Path | None = None) -> list[Path]:
    """`write_report` of a results .json of the experiment (its summary and expectations computed anew), into
    `out` (default: the folder of the .json, which is rewritten)."""
    full = json.loads(results.read_text())
    return write_report({k: v for k, v in full.items() if k not in DERIVED}, out or results.parent)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a results .json of experiments/focal_experiment.py")
    parser.add_argument("--out", type=Path, help="where the .json, .md and .png go (default: the folder of results)")
    args = parser.parse_args(argv)
    print("wrote " + ", ".join(map(str, rebuild(args.results, args.out))))


if __name__ == "__main__":
    main()
