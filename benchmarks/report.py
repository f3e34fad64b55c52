"""The benchmark's report: targets checked against one run's results, and the markdown tables of results.md."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

# Ours / official in one run: issue 30 (forward, bf16 training step), issue 18 (fp32 step, camera student).
OFFICIAL_TARGETS = {
    ("forward", "fp32"): 0.80,
    ("forward", "bf16"): 0.90,
    ("train", "fp32"): 0.70,
    ("train", "bf16"): 0.90,
}
CAMERA_STUDENT_TARGET = 0.75
# The tuned kernels against the fastest forced combination of the same row.
TUNED_TARGET = 1.05
# Issue 6: a distillation step against the student step alone.
TARGETS = {"distill_time": 1.15, "distill_memory": 1.3}
LOADER_TARGET = 40.0
ALLOCATOR_LABELS = {"default": "glibc default allocator", "late": "mallopt after warm-up", "env": "GLIBC_TUNABLES"}


# What a run adds to its case; everything else names the configuration.
RESULT_FIELDS = {
    *("seconds", "times", "cpu_share", "peak_rss_gb", "flops", "gflops", "chosen", "tune_seconds", "round"),
    *("compile_seconds", "teacher_seconds", "samples_per_s", "samples_per_s_per_worker", "round_seconds"),
    "chosen_rounds",
}


def config_key(r: dict) -> str:
    return json.dumps({k: v for k, v in r.items() if k not in RESULT_FIELDS}, sort_keys=True)


def collapse(results: list[dict]) -> list[dict]:
    """One row per configuration (matmul rows stay as they are): the median seconds over its rounds, their
    seconds by round in 'round_seconds', GFLOP/s of the median, the lowest CPU share, the highest peak RSS."""
    rows: dict[str, list[dict]] = {}
    for r in results:
        rows.setdefault(config_key(r) if r["kind"] != "matmul" else str(id(r)), []).append(r)
    out = []
    for runs in rows.values():
        row = dict(runs[0])
        if "seconds" in row:
            row["seconds"] = statistics.median(r["seconds"] for r in runs)
            row["round_seconds"] = [r["seconds"] for r in runs]
            row["cpu_share"] = min(r.get("cpu_share", 1.0) for r in runs)
            row["peak_rss_gb"] = max(r.get("peak_rss_gb", 0.0) for r in runs)
            row["chosen_rounds"] = [r["chosen"] for r in runs if "chosen" in r]
            if "flops" in row:
                row["gflops"] = row["flops"] / row["seconds"] / 1e9
        out.append(row)
    return out


def paired_ratio(results: list[dict], numerator: dict, denominator: dict) -> tuple[float, list[float]] | None:
    """Median over rounds of (numerator row's seconds / denominator row's seconds) within each round, and the
    per-round ratios; None when no round has both."""
    key_n, key_d = config_key(numerator), config_key(denominator)
    ratios = []
    for r in sorted({row.get("round", 0) for row in results}):
        n = [row["seconds"] for row in results if config_key(row) == key_n and row.get("round", 0) == r]
        d = [row["seconds"] for row in results if config_key(row) == key_d and row.get("round", 0) == r]
        if n and d:
            ratios.append(statistics.median(n) / statistics.median(d))
    return (statistics.median(ratios), ratios) if ratios else None


def _find(results: list[dict], **match: object) -> dict | None:
    for r in results:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def matmul_ceiling(results: list[dict]) -> dict[str, float]:
    """{'float32': GFLOP/s, 'bfloat16': GFLOP/s}, the best matmul measurement of each dtype in the run."""
    ceiling: dict[str, float] = {}
    for r in results:
        if r["kind"] == "matmul":
            ceiling[r["dtype"]] = max(ceiling.get(r["dtype"], 0.0), r["gflops"])
    return ceiling


def _default(r: dict) -> bool:
    """Our row as the scripts run it: kernels tuned, allocator tuned, not compiled."""
    ours = r.get("code", "ours") == "ours" and r.get("kernels", "auto") == "auto"
    return ours and r.get("allocator", "tuned") == "tuned" and not r.get("compile") and not r.get("fp32_island")


def target_check(target: str, value: float, limit: float, at_least: bool, rounds: list[float] | None = None) -> dict:
    met = value >= limit if at_least else value <= limit
    check = {"target": target, "value": value, "limit": f"{'>=' if at_least else '<='} {limit}", "met": met}
    return {**check, "rounds": rounds} if rounds else check


def _ours_and_official(results: list[dict]) -> list[tuple[dict, dict]]:
    """(our default row, the official row) pairs of the same kind, encoder, precision and training recipe."""
    pairs = []
    for official in results:
        if official.get("code") == "official" and official["kind"] in ("forward", "train"):
            match = {"kind": official["kind"], "encoder": official["encoder"], "precision": official["precision"]}
            if official["kind"] == "train":
                match["name"] = official["name"]
            ours = next((r for r in results if _default(r) and all(r.get(k) == v for k, v in match.items())), None)
            if ours:
                pairs.append((ours, official))
    return pairs


def official_checks(raw: list[dict]) -> list[dict]:
    """Ratios to the official code (per round, then their median), the tuned kernels against the fastest forced
    ones."""
    results = collapse(raw)
    checks = []
    for ours, official in _ours_and_official(results):
        what = f"{ours['encoder']} forward" if ours["kind"] == "forward" else f"{ours['name']} train step"
        limit = OFFICIAL_TARGETS[(ours["kind"], ours["precision"])]
        value, rounds = paired_ratio(raw, ours, official)
        checks.append(target_check(f"{what} {ours['precision']}: ours / official", value, limit, False, rounds=rounds))
    student = _find(results, kind="train", name="student", precision="bf16", kernels="auto", code="ours")
    official = _find(results, kind="train", name="official recipe", precision="bf16", code="official")
    paired = student and official and paired_ratio(raw, student, official)
    if paired:
        name = "camera student (frozen backbone, inject 0) bf16 step / official recipe bf16 step"
        checks.append(target_check(name, paired[0], CAMERA_STUDENT_TARGET, False, rounds=paired[1]))
    for r in results:
        if _default(r) and r["kind"] in ("forward", "train") and r["encoder"] == "vits":
            match = {"kind": r["kind"], "precision": r["precision"], "name": r.get("name"), "code": "ours"}
            forced = [f for f in results if f.get("kernels", "auto") != "auto" and all(f.get(k) == v for k, v in
                                                                                      match.items())]  # fmt: skip
            if forced:
                best = min(forced, key=lambda f: f["seconds"])
                what = f"vits forward {r['precision']}" if r["kind"] == "forward" else f"{r['name']} {r['precision']}"
                name = f"{what}: tuned kernels / fastest forced ({best['kernels']})"
                checks.append(target_check(name, r["seconds"] / best["seconds"], TUNED_TARGET, False))
    return checks


def summarize(raw: list[dict]) -> list[dict]:
    """Targets as measured in this run: [{'target', 'value', 'limit', 'met', 'rounds' (per-round values, where
    there are)}]."""
    checks = official_checks(raw)
    results = collapse(raw)
    for teacher in ("bf16", "bf16, compiled", "cached"):
        for precision in ("fp32", "bf16"):
            student = _find(results, kind="train", name="student", precision=precision, kernels="auto", code="ours")
            distill = _find(results, kind="train", name=f"student+teacher({teacher})", precision=precision)
            if student and distill:
                t, m = distill["seconds"] / student["seconds"], distill["peak_rss_gb"] / student["peak_rss_gb"]
                label = f"{teacher} teacher, {precision} student"
                name = f"distillation / student {{}} ({label})"
                checks.append(target_check(name.format("step time"), t, TARGETS["distill_time"], False))
                checks.append(target_check(name.format("peak RSS"), m, TARGETS["distill_memory"], False))
    for r in results:
        if r["kind"] == "loader":
            name = f"loader samples/s per worker ({r['workers']} workers, {r['size']} px)"
            checks.append(target_check(name, r["samples_per_s_per_worker"], LOADER_TARGET, True))
    return checks


def _variant(r: dict) -> str:
    """What differs from the scripts' defaults, besides the kernels."""
    if r.get("code") == "official":
        return "**official code**"
    parts = ["fp32 head island in training"] if r.get("fp32_island") else []
    allocator = r.get("allocator", "tuned")
    if allocator != "tuned":
        parts.append(ALLOCATOR_LABELS[allocator])
    if r.get("compile") and r["kind"] == "forward":
        parts.append(f"torch.compile, frozen weights (compiled in {r['compile_seconds']:.0f} s)")
    elif r.get("compile") or r.get("compile_teacher"):
        parts.append(f"compiled in {r['compile_seconds']:.0f} s")
    return ", ".join(parts) or "default"


def _kernels(r: dict) -> str:
    """'forced: a, b', 'tuned: a, b (seconds of timing)' ('a, b x2; c, d x1' where rounds chose differently), or ''
    (the official code, or a row that did not say)."""
    if r.get("code") == "official" or ("chosen" not in r and r.get("kernels", "auto") == "auto"):
        return ""
    if r.get("kernels", "auto") != "auto":
        return "forced: " + ", ".join(part.split("=")[1] for part in r["kernels"].split(","))
    picks = [", ".join(part.split(" ")[0].split("=")[1] for part in c.split(", ")) for c in r.get("chosen_rounds") or
             [r["chosen"]]]  # fmt: skip
    counts = {pick: picks.count(pick) for pick in picks}
    label = counts.popitem()[0] if len(counts) == 1 else "; ".join(f"{p} x{n}" for p, n in counts.items())
    return f"tuned: {label} ({r['tune_seconds']:.1f} s)"


def _with_official_flops(results: list[dict]) -> list[dict]:
    """The results, official rows given the FLOPs of our row of the same workload (the same network) and GFLOP/s."""
    official = {id(o): ours for ours, o in _ours_and_official(results)}
    rows = []
    for r in results:
        if id(r) in official and "flops" in official[id(r)]:
            r = {**r, "flops": official[id(r)]["flops"], "gflops": official[id(r)]["flops"] / r["seconds"] / 1e9}
        rows.append(r)
    return [r for r in rows if "gflops" in r or r["kind"] not in ("forward", "train")]


def _speed_cells(r: dict, ceiling: dict[str, float]) -> list[str]:
    """GFLOP/s, its fraction of the matmul ceiling of the row's dtype, peak RSS and CPU share."""
    fraction = r["gflops"] / ceiling["float32" if r["precision"] == "fp32" else "bfloat16"]
    return [f"{r['gflops']:.0f}", f"{fraction:.2f}", f"{r['peak_rss_gb']:.2f}", f"{r['cpu_share']:.2f}"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Markdown lines of a table, after an empty line."""
    return [
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _train_cells(r: dict, results: list[dict], ceiling: dict[str, float]) -> list[str]:
    """One row of the training table: the step against the camera student's and, for bf16, the fp32 speed-up."""
    student = _find(results, kind="train", name="student", precision=r["precision"], kernels="auto", code="ours")
    fp32 = _find(results, kind="train", name=r["name"], precision="fp32", code=r["code"], kernels=r["kernels"],
                 fp32_island=r.get("fp32_island"))  # fmt: skip
    speedup = f"{fp32['seconds'] / r['seconds']:.2f}x" if r["precision"] == "bf16" and fp32 else ""
    vs_student = f"{r['seconds'] / student['seconds']:.2f}x" if student else ""
    teacher = f"{r['teacher_seconds']:.3f}" if "teacher_seconds" in r else ""
    gflops, fraction, rss, share = _speed_cells(r, ceiling)
    return [f"{r['name']} (inject {r['inject']})", _variant(r), _kernels(r), r["precision"], f"{r['seconds']:.3f}",
            vs_student, speedup, f"{r['flops'] / 1e9:.0f}", gflops, fraction, rss, teacher, share]  # fmt: skip


def markdown(report: dict) -> str:
    """The run as markdown tables (what the README shows)."""
    meta, results = report["meta"], collapse(report["results"])
    ceiling = matmul_ceiling(results)
    lines = [
        f"Command: `{meta['command']}`  ",
        f"{meta['date']}, {meta['cpu']}, torch {meta['torch']}, {meta['threads']} threads, "
        f"allocator: {meta['allocator']}. Forward: median of {meta['repeats']} after {meta['warmup']} warm-up "
        f"(vitl: 3 after 1); train step: median of {meta['train_repeats']} after 1. Compared rows (ours and the "
        f"official code, the kernel choices) ran in {meta.get('rounds', 1)} interleaved rounds, each a fresh "
        "process: their seconds are the median over the rounds, their ratios the median of the per-round ratios. "
        "Load average "
        f"{meta['load_average_before'][0]:.2f} before the run. CPU share: the fraction of its threads' time a "
        "configuration got (below ~0.9: other processes competed, times inflated).",
        "",
        f"Matmul ceiling ({meta['matmul_n']}^3): {ceiling['float32']:.0f} GFLOP/s fp32, "
        f"{ceiling['bfloat16']:.0f} GFLOP/s bf16 (the better of the "
        "measurements at the start and at the end of the run).",
    ]
    rows = _with_official_flops(results)
    forward = [
        [r["encoder"], r["precision"], _variant(r), _kernels(r), f"{r['seconds']:.3f}", f"{r['flops'] / 1e9:.1f}",
         *_speed_cells(r, ceiling)]
        for r in rows if r["kind"] == "forward"
    ]  # fmt: skip
    lines += _table([f"forward, batch 1, {meta['size']} px", "precision", "variant", "kernels", "median s", "GFLOP",
                     "GFLOP/s", "/ ceiling", "peak RSS GB", "CPU share"], forward)  # fmt: skip
    train = [_train_cells(r, results, ceiling) for r in rows if r["kind"] == "train"]
    lines += _table([f"train step, vits, batch {meta['batch']}, {meta['size']} px", "variant", "kernels", "precision",
                     "median s", "vs student", "fp32 / bf16", "GFLOP", "GFLOP/s", "/ ceiling", "peak RSS GB",
                     "teacher forward s", "CPU share"], train)  # fmt: skip
    loaders = [
        [f"{r['size']} px", str(r["workers"]), f"{r['samples_per_s']:.1f}", f"{r['samples_per_s_per_worker']:.1f}"]
        for r in results
        if r["kind"] == "loader"
    ]
    if loaders:
        lines += _table(["data loader", "workers", "samples/s", "per worker"], loaders)
    targets = [
        [c["target"], f"{c['value']:.3f}", c["limit"], "n/a" if c["met"] is None else "yes" if c["met"] else "NO",
         " ".join(f"{v:.3f}" for v in c.get("rounds", []))]
        for c in report["targets"]
    ]  # fmt: skip
    lines += _table(["target", "measured", "required", "met", "per round"], targets)
    return "\n".join(lines) + "\n"


def save_report(report: dict, out: str, text: str) -> None:
    """Write the report as JSON to `out` and `text` (its markdown) beside it (.md), and print the markdown."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    path.with_suffix(".md").write_text(text)
    print(text)
