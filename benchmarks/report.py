"""The benchmark's report: targets checked against one run's results, and the markdown tables of results.md."""

from __future__ import annotations

import json
from pathlib import Path

TARGETS = {"fp32_forward": 0.85, "bf16_forward": 0.60, "distill_time": 1.15, "distill_memory": 1.3, "bf16_train": 3.0}
LOADER_TARGET = 40.0
ALLOCATOR_LABELS = {"default": "glibc default allocator", "late": "mallopt after warm-up", "env": "GLIBC_TUNABLES"}


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
    variant = r.get("attn", "auto") != "auto" or r.get("compile") or r.get("head_nchw")
    return r.get("allocator", "tuned") == "tuned" and not variant


def _check(target: str, value: float, limit: float, at_least: bool) -> dict:
    return {
        "target": target,
        "value": value,
        "limit": f"{'>=' if at_least else '<='} {limit}",
        "met": value >= limit if at_least else value <= limit,
    }


def summarize(results: list[dict]) -> list[dict]:
    """Targets of issue 6 as measured in this run: [{'target', 'value', 'limit', 'met'}]."""
    ceiling = matmul_ceiling(results)
    checks = []
    for r in results:
        default, compiled = _default(r), r.get("compile") and r.get("allocator", "tuned") == "tuned"
        if r["kind"] == "forward" and (default or compiled) and r["encoder"] == "vits":
            dt = "float32" if r["precision"] == "fp32" else "bfloat16"
            name = f"vits {r['precision']} forward{', torch.compile' if compiled else ''} / matmul ceiling"
            checks.append(_check(name, r["gflops"] / ceiling[dt], TARGETS[f"{r['precision']}_forward"], True))
    for teacher in ("bf16", "bf16, compiled", "cached"):
        for precision in ("fp32", "bf16"):
            student = _find(results, kind="train", name="student", precision=precision)
            distill = _find(results, kind="train", name=f"student+teacher({teacher})", precision=precision)
            if student and distill:
                t, m = distill["seconds"] / student["seconds"], distill["peak_rss_gb"] / student["peak_rss_gb"]
                label = f"{teacher} teacher, {precision} student"
                checks.append(_check(f"distillation / student step time ({label})", t, TARGETS["distill_time"], False))
                checks.append(_check(f"distillation / student peak RSS ({label})", m, TARGETS["distill_memory"], False))
    for r in results:
        bf16 = _find(results, kind="train", name=r.get("name"), precision="bf16")
        if r["kind"] == "train" and r["precision"] == "fp32" and bf16:
            speedup = r["seconds"] / bf16["seconds"]
            checks.append(_check(f"train step fp32 / bf16 time ({r['name']})", speedup, TARGETS["bf16_train"], True))
    for r in results:
        if r["kind"] == "loader":
            name = f"loader samples/s per worker ({r['workers']} workers, {r['size']} px)"
            checks.append(_check(name, r["samples_per_s_per_worker"], LOADER_TARGET, True))
    return checks


def _variant(r: dict) -> str:
    parts = []
    if r.get("attn", "auto") != "auto":
        parts.append(f"attention={r['attn']}")
    allocator = r.get("allocator", "tuned")
    if allocator != "tuned":
        parts.append(ALLOCATOR_LABELS[allocator])
    if r.get("head_nchw"):
        parts.append("head in NCHW")
    if r.get("compile"):
        parts.append(f"torch.compile, frozen weights (compiled in {r['compile_seconds']:.0f} s)")
    return ", ".join(parts) or "default"


def markdown(report: dict) -> str:
    """The run as markdown tables (what the README shows)."""
    meta, results = report["meta"], report["results"]
    ceiling = matmul_ceiling(results)
    lines = [
        f"Command: `{meta['command']}`  ",
        f"{meta['date']}, {meta['cpu']}, torch {meta['torch']}, {meta['threads']} threads, "
        f"allocator: {meta['allocator']}. Forward: median of {meta['repeats']} after {meta['warmup']} warm-up "
        f"(vitl: 3 after 1); train step: median of {meta['train_repeats']} after 1; load average "
        f"{meta['load_average_before'][0]:.2f} before the run. CPU share: the fraction of its threads' time a "
        "configuration got (below ~0.9: other processes competed, times inflated).",
        "",
        f"Matmul ceiling ({meta['matmul_n']}^3): {ceiling['float32']:.0f} GFLOP/s fp32, "
        f"{ceiling['bfloat16']:.0f} GFLOP/s bf16 (the better of the "
        "measurements at the start and at the end of the run).",
        "",
        f"| forward, batch 1, {meta['size']} px | precision | variant | median s | GFLOP | GFLOP/s | / ceiling "
        "| peak RSS GB | CPU share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["kind"] == "forward":
            frac = r["gflops"] / ceiling["float32" if r["precision"] == "fp32" else "bfloat16"]
            lines.append(
                f"| {r['encoder']} | {r['precision']} | {_variant(r)} | {r['seconds']:.3f} | {r['flops'] / 1e9:.1f} | "
                f"{r['gflops']:.0f} | {frac:.2f} | {r['peak_rss_gb']:.2f} | {r['cpu_share']:.2f} |"
            )
    lines += [
        "",
        f"| train step, vits, batch {meta['batch']}, {meta['size']} px | precision | median s | vs student "
        "| fp32 / bf16 | GFLOP | GFLOP/s | / ceiling | peak RSS GB | teacher forward s | CPU share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["kind"] == "train":
            student = _find(results, kind="train", name="student", precision=r["precision"])
            fp32 = _find(results, kind="train", name=r["name"], precision="fp32")
            speedup = f"{fp32['seconds'] / r['seconds']:.2f}x" if r["precision"] == "bf16" and fp32 else ""
            teacher = f"{r['teacher_seconds']:.3f}" if "teacher_seconds" in r else ""
            frac = r["gflops"] / ceiling["float32" if r["precision"] == "fp32" else "bfloat16"]
            compiled = f", compiled in {r['compile_seconds']:.0f} s" if "compile_seconds" in r else ""
            lines.append(
                f"| {r['name']} (inject {r['inject']}{compiled}) | {r['precision']} | {r['seconds']:.3f} | "
                f"{r['seconds'] / student['seconds']:.2f}x | {speedup} | {r['flops'] / 1e9:.0f} | {r['gflops']:.0f} | "
                f"{frac:.2f} | {r['peak_rss_gb']:.2f} | {teacher} | {r['cpu_share']:.2f} |"
            )
    loaders = [r for r in results if r["kind"] == "loader"]
    if loaders:
        lines += ["", "| data loader | workers | samples/s | per worker |", "|---|---|---|---|"]
        for r in loaders:
            per_worker = r["samples_per_s_per_worker"]
            lines.append(f"| {r['size']} px | {r['workers']} | {r['samples_per_s']:.1f} | {per_worker:.1f} |")
    lines += ["", "| target | measured | required | met |", "|---|---|---|---|"]
    for c in report["targets"]:
        lines.append(f"| {c['target']} | {c['value']:.3f} | {c['limit']} | {'yes' if c['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def save_report(report: dict, out: str, text: str) -> None:
    """Write the report as JSON to `out` and `text` (its markdown) beside it (.md), and print the markdown."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    path.with_suffix(".md").write_text(text)
    print(text)
