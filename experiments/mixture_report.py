"""Report of the mixture experiment: summary over seeds per camera, the verdict, markdown, figure, the results
block of experiments/README.md.

Rebuild the .md, the .png and the results block of a markdown file from a results file, without training:

    python experiments/mixture_report.py experiments/results/mixture.json --doc experiments/README.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np

if __name__ == "__main__":  # run as a script: the repository's packages import from its root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.focal_plot import BLACK, COLOURS, GREY, Axes, linear_ticks, text  # noqa: E402

MODELS = {"A": "A: no camera (teacher)", "C": "C: camera + zoom + distill A"}
METRICS = ("abs_rel", "d1", "zoom_slope")
BLOCK = re.compile(r"<!-- mixture results -->.*?<!-- /mixture results -->", re.S)
FOCAL_TICKS = (0.4, 0.6, 1.0, 1.5, 2.0, 3.0)


def _stats(values: list[float]) -> dict:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    mean = float(np.mean(finite)) if finite else math.nan
    return {"mean": mean, "spread": float(np.ptp(finite)) if len(finite) > 1 else 0.0, "values": values}


def summarise(record: dict) -> dict:
    """{model: {label: {metric: {mean, spread (max - min), values per seed}}}} over the seeds."""
    runs = list(record["seed_runs"].values())
    labels = list(runs[0]["A"]["final"])
    return {
        model: {label: {m: _stats([r[model]["final"][label].get(m, math.nan) for r in runs]) for m in METRICS}
                for label in labels}
        for model in MODELS
    }  # fmt: skip


def verdict(summary: dict, held_out: list[str]) -> list[str]:
    """Plain sentences: where C beats A on held-out cameras (abs_rel, seeds agreeing), by how much, where not."""
    wins, losses = [], []
    for label in held_out:
        a, c = summary["A"][label]["abs_rel"], summary["C"][label]["abs_rel"]
        seeds = sum(cv < av for av, cv in zip(a["values"], c["values"]))
        part = f"{label} ({c['mean']:.3f} vs {a['mean']:.3f}, C / A {c['mean'] / a['mean']:.2f}, {seeds} of " \
               f"{len(a['values'])} seeds)"  # fmt: skip
        (wins if c["mean"] < a["mean"] else losses).append(part)
    a_mean = np.mean([summary["A"][h]["abs_rel"]["mean"] for h in held_out])
    c_mean = np.mean([summary["C"][h]["abs_rel"]["mean"] for h in held_out])
    slopes = [(h, summary["A"][h]["zoom_slope"]["mean"], summary["C"][h]["zoom_slope"]["mean"]) for h in held_out]
    return [
        f"C beats A on {len(wins)} of {len(held_out)} held-out cameras (abs_rel): " + ("; ".join(wins) or "none"),
        "C does not beat A on: " + ("; ".join(losses) or "none (C is better on every held-out camera)"),
        f"Mean abs_rel over the held-out cameras: C {c_mean:.3f}, A {a_mean:.3f} "
        f"({100 * (c_mean / a_mean - 1):+.0f} %)",
        "Zoom slope (0: camera-aware, -1: depth from apparent size), A -> C: "
        + ", ".join(f"{h} {a:+.2f} -> {c:+.2f}" for h, a, c in slopes),
    ]


def _cell(stats: dict) -> str:
    return f"{stats['mean']:.3f}" + (f" +- {stats['spread']:.3f}" if len(stats["values"]) > 1 else "")


def tables(record: dict, summary: dict) -> list[str]:
    """The held-out and the training cameras' tables (markdown lines)."""
    lines = []
    head = (
        "| camera | hFOV | f / short side | abs_rel A | abs_rel C | C / A | d1 A | d1 C | zoom slope A | zoom slope C |"
    )
    cameras = record["design"]["cameras"]
    known = {c["label"] for kind in cameras.values() for c in kind} | {"mean"}
    extra = [{"label": label, "hfov": None, "focal": None} for label in summary["A"] if label not in known]  # --real
    for kind, title in (("held_out", "Held-out cameras (never trained on)"), ("train", "Training datasets (val)")):
        lines += [f"**{title}**", "", head, "|---" * 10 + "|"]
        for camera in cameras[kind] + (extra if kind == "train" else []):
            a, c = summary["A"][camera["label"]], summary["C"][camera["label"]]
            ratio = c["abs_rel"]["mean"] / a["abs_rel"]["mean"]
            cells = [_cell(a["abs_rel"]), _cell(c["abs_rel"]), f"{ratio:.2f}", _cell(a["d1"]), _cell(c["d1"]),
                     _cell(a["zoom_slope"]), _cell(c["zoom_slope"])]  # fmt: skip
            fov, focal = ("-", "-") if camera["hfov"] is None else (f"{camera['hfov']:g}", f"{camera['focal']:.2f}")
            lines.append(f"| {camera['label']} | {fov} | {focal} | " + " | ".join(cells) + " |")
        lines.append("")
    mean_a, mean_c = summary["A"]["mean"]["abs_rel"], summary["C"]["mean"]["abs_rel"]
    lines += [f"`eval/mean/abs_rel` (training datasets only): A {_cell(mean_a)}, C {_cell(mean_c)}.", ""]
    return lines


def markdown(record: dict, summary: dict) -> str:
    seeds = len(record["seed_runs"])
    lines = [f"# Mixture experiment: {record['name']}", "",
             f"`{record['command']}` (scale {record['scale']}); seeds {record['seeds']}; {record['minutes']:.1f} "
             f"minutes; load average {record['load_average_start'][0]:.1f} at start, "
             f"{record['load_average_end'][0]:.1f} at the end. Means over seeds"
             + ("; +- = max - min between seeds." if seeds > 1 else "."), "", *tables(record, summary),
             "## Verdict", "", *(f"- {s}" for s in verdict(summary, held_out_labels(record))), "",
             "## Curves (mean abs_rel of the training datasets, and of the held-out cameras)", "",
             "| seed | model | step | training mean | held-out mean |", "|---|---|---|---|---|"]  # fmt: skip
    for seed, run in record["seed_runs"].items():
        lines += [f"| {seed} | {m} | {s} | {t:.3f} | {h:.3f} |" for m in MODELS for s, t, h in run[m]["curve"]]
    lines += ["", "## Timing", "", "| seed | run | wall min | CPU min | steps |", "|---|---|---|---|---|"]
    for seed, run in record["seed_runs"].items():
        for t in run["timing"]:
            notes = " (reused)" * bool(t.get("reused")) + " (resumed: times after the resume)" * bool(t.get("resumed"))
            lines.append(f"| {seed} | {t['model']}{notes} | {t['wall_s'] / 60:.1f} "
                         f"| {t.get('cpu_s', math.nan) / 60:.1f} | {t.get('steps', '')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def held_out_labels(record: dict) -> list[str]:
    return [c["label"] for c in record["design"]["cameras"]["held_out"]]


def plot(record: dict, summary: dict, path: Path) -> None:
    """abs_rel and zoom slope against the camera's focal length (short sides, log axis) for A and C, held-out
    cameras as filled markers joined by lines, training cameras as grey verticals; bars: range over seeds."""
    canvas = np.full((450, 900, 3), 255, np.uint8)
    cams = record["design"]["cameras"]
    focals = [c["focal"] for kind in cams.values() for c in kind]
    xlim = (min(focals) * 0.8, max(focals) * 1.25)
    top = max([v for m in MODELS for h in held_out_labels(record) for v in summary[m][h]["abs_rel"]["values"]]
              + [0.1]) * 1.1  # fmt: skip
    panels = [
        (Axes(canvas, (60, 40, 420, 370), xlim, (0.0, top), xlog=True), "abs_rel", linear_ticks(top)),
        (Axes(canvas, (500, 40, 860, 370), xlim, (-1.2, 0.6), xlog=True), "zoom_slope", (-1, -0.5, 0, 0.5)),
    ]
    for ax, metric, yticks in panels:
        ax.frame(f"{metric} per held-out camera", [t for t in FOCAL_TICKS if xlim[0] <= t <= xlim[1]], yticks,
                 "fx / short side")  # fmt: skip
        for camera in cams["train"]:
            ax.line((camera["focal"],) * 2, ax.ylim, GREY, dashed=True, thickness=1, markers=False)
        ordered = sorted(cams["held_out"], key=lambda c: c["focal"])
        xs = [c["focal"] for c in ordered]
        for model in MODELS:
            stats = [summary[model][c["label"]][metric] for c in ordered]
            finite = [[v for v in s["values"] if v is not None and math.isfinite(v)] or [math.nan] for s in stats]
            ax.ranges(xs, [min(v) for v in finite], [max(v) for v in finite], COLOURS[model])
            ax.line(xs, [s["mean"] for s in stats], COLOURS[model])
    panels[1][0].line(xlim, (0.0, 0.0), BLACK, thickness=1, markers=False)
    for i, (model, label) in enumerate(MODELS.items()):
        Axes(canvas, (60 + 330 * i, 424, 90 + 330 * i, 434), (0, 1), (0, 1)).line((0, 1), (0.5, 0.5), COLOURS[model])
        text(canvas, label, (98 + 330 * i, 434), 0.42)
    text(canvas, "grey dashed: training cameras", (720, 434), 0.38, GREY)
    cv2.imwrite(str(path), canvas)


def doc_block(record: dict, summary: dict, figure: Path, doc: Path) -> str:
    """The results block of the markdown file `doc`: the tables, the figure and the verdict."""
    link = Path(os.path.relpath(figure.resolve(), doc.resolve().parent)).as_posix()
    return "\n".join([
        "<!-- mixture results -->",
        f"Results of `{record['command']}` ({record['minutes']:.0f} minutes, seeds {record['seeds']}; all numbers "
        f"in `{record['name']}.json`, curves and timing in `{record['name']}.md` under experiments/results/):", "",
        *tables(record, summary), f"![mixture experiment]({link})", "",
        *(f"- {s}" for s in verdict(summary, held_out_labels(record))),
        "<!-- /mixture results -->",
    ])  # fmt: skip


def write_outputs(record: dict, out: Path, doc: Path | None = None) -> list[Path]:
    """Write <name>.json (the record and its summary), <name>.md and <name>.png into `out`, and the results block of
    `doc` (between the `<!-- mixture results -->` markers); returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(record)
    paths = [out / f"{record['name']}{suffix}" for suffix in (".json", ".md", ".png")]
    paths[0].write_text(json.dumps({**record, "summary": summary}, indent=1, allow_nan=True))
    paths[1].write_text(markdown(record, summary))
    plot(record, summary, paths[2])
    if doc is not None:
        content = doc.read_text()
        if not BLOCK.search(content):
            raise SystemExit(f"{doc} has no '<!-- mixture results -->' ... '<!-- /mixture results -->' block")
        doc.write_text(BLOCK.sub(lambda _: doc_block(record, summary, paths[2], doc), content))
        paths.append(doc)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a results .json of experiments/mixture_experiment.py")
    parser.add_argument("--out", type=Path, help="where the .json, .md and .png go (default: the folder of results)")
    parser.add_argument("--doc", type=Path, help="a markdown file whose results block is rewritten")
    args = parser.parse_args(argv)
    record = {k: v for k, v in json.loads(args.results.read_text()).items() if k != "summary"}
    print("wrote " + ", ".join(map(str, write_outputs(record, args.out or args.results.parent, args.doc))))


if __name__ == "__main__":
    main()
