"""The GPU check's bookkeeping (benchmarks/gpu_check.py): the dense bf16 peak by device name, the run's description,
sections and rows run under a time budget, comparisons of outputs, the goals of issue 30, gpu_results.json / .md."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import signal
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from depth_anything_v2.kernels import cpu_model

# Dense bf16 tensor-core peak in TFLOP/s from the vendors' data sheets (their headline figures with sparsity are
# twice these). The first name contained in the device's name wins, so the specific parts come before the family.
PEAK_BF16_TFLOPS = (
    ("H200 NVL", 835.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM, which torch names 'NVIDIA H100 80GB HBM3'
    ("A100", 312.0),
)

# (name, sections, batch: 'large' (the run's largest), 1 or None (any), modes that count, field, direction, limit);
# the best matching measured row is judged.
COMPILED = ("compiled", "compiled + CUDA graph")
GOALS = (
    ("vitl 518 inference, batch 32, eager", ("inference",), "large", ("eager",), "images_per_s", ">=", 350.0),
    ("vitl 518 inference, batch 32, compiled", ("compiled",), "large", COMPILED, "images_per_s", ">=", 450.0),
    ("vitl 518 inference, batch 1, eager", ("inference",), 1, ("eager",), "ms_per_image", "<=", 8.0),
    ("vitl 518 inference, batch 1, compiled", ("compiled", "graphs"), 1, COMPILED, "ms_per_image", "<=", 4.0),
    ("vitl training step, model FLOP utilisation", ("training",), None, ("step",), "mfu", ">=", 0.35),
)


class SectionTimeout(BaseException):
    """Raised by the alarm at the end of a section's budget; a BaseException, so that library code catching
    Exception (a compiler's fallback, for one) does not swallow it."""


def peak_tflops(device_name: str, override: float | None) -> tuple[float | None, str]:
    """(dense bf16 peak in TFLOP/s, where it came from) for a device name; (None, why) when unknown."""
    if override is not None:
        return override, "--peak-tflops"
    for name, tflops in PEAK_BF16_TFLOPS:
        if name in device_name:
            return tflops, f"data sheet ({name})"
    return None, f"no data-sheet peak for {device_name!r}: pass --peak-tflops"


def first_line(err: BaseException) -> str:
    """'ErrorType: the first line of its message' (at most 200 characters of it)."""
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"


def machine(
    device: torch.device, args: argparse.Namespace, settings: dict, peak: float | None, peak_source: str
) -> dict:
    """The run's description: command, device, versions, settings, and whether the goals apply (a run at full
    scale on CUDA)."""
    cuda = device.type == "cuda"
    meta = {"command": "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:]),
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "device": device.type,
            "device_name": torch.cuda.get_device_name() if cuda else cpu_model(), "cpu": cpu_model(),
            "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None, "peak_tflops": peak,
            "peak_source": peak_source, "seed": args.seed, **settings}  # fmt: skip
    if cuda:
        props = torch.cuda.get_device_properties(device)
        meta.update(capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                    memory_gib=props.total_memory / 2**30)  # fmt: skip
        try:
            query = ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"]
            meta["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as err:
            meta["nvidia_smi"] = first_line(err)
    meta["goal_scale"] = cuda and not args.smoke
    meta["scale"] = (
        f"{'smoke run: ' if args.smoke else ''}{settings['encoder']} at {settings['size']} px on {device.type}"
    )
    return meta


def relative_error(out: Tensor, ref: Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 (NaN when out holds a NaN)."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    return float((out - ref).norm() / ref.norm())


@contextmanager
def full_fp32():
    """fp32 convolutions and matmuls without TF32 (cuDNN allows TF32 convolutions by default)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def attempt(rows: list[dict], fn: Callable[[], dict], **row: object) -> None:
    """Append fn's row; a row that fails is recorded with its error and the section goes on."""
    try:
        rows.append({**row, **fn()})
    except Exception as err:  # noqa: BLE001
        rows.append({**row, "status": "failed", "reason": first_line(err)})


def _alarm(signum, frame):
    raise SectionTimeout


def run_section(report: dict, name: str, fn: Callable[[dict], None], budget_s: float, skip: str | None) -> dict:
    """Run `fn(section)`, which appends rows to section['rows'] as it measures them, within `budget_s` seconds.

    The section ends 'measured'; 'skipped' with `skip` as the reason (fn is not called); 'partial' when the budget
    ran out (the rows so far stay); or 'failed' with the error and its traceback (the rows so far stay). The
    budget is a SIGALRM timer (none where the platform has no setitimer).
    """
    section = {"status": "skipped", "reason": skip, "budget_s": round(budget_s, 1), "seconds": 0.0, "rows": []}
    report["sections"][name] = section
    if skip:
        return section
    timed = hasattr(signal, "setitimer")
    if timed:
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, budget_s)
    start = time.perf_counter()
    try:
        fn(section)
        section.update(status="measured", reason=None)
    except SectionTimeout:
        section.update(status="partial", reason=f"stopped at its {budget_s:.3g} s budget; the rows shown were measured")
    except Exception as err:  # noqa: BLE001 - a failing section is recorded and the next one runs
        section.update(status="failed", reason=first_line(err))
        section["traceback"] = traceback.format_exc()[-3000:]
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        section["seconds"] = round(time.perf_counter() - start, 1)
    return section


def judge_goals(report: dict) -> list[dict]:
    """Each goal with the best matching measured row's value and whether it was met: None when nothing was
    measured, or when the run was not vitl at 518 px on a GPU (a smoke run), whose values are shown but not judged."""
    meta = report["meta"]
    at_scale = meta["goal_scale"]
    goals = []
    for name, sections, batch, modes, field, direction, limit in GOALS:
        rows = [row for s in sections for row in report["sections"].get(s, {}).get("rows", [])]
        want = max(meta["batches"]) if batch == "large" else batch
        values = [
            r[field]
            for r in rows
            if r.get("status") == "measured" and r.get("mode") in modes and r.get(field) is not None
            and want in (None, r.get("batch"))
        ]  # fmt: skip
        value = (max if direction == ">=" else min)(values) if values else None
        met = None if value is None or not at_scale else (value >= limit if direction == ">=" else value <= limit)
        note = "" if at_scale else "not judged: " + meta["scale"]
        goals.append({"goal": name, "value": value, "target": f"{direction} {limit:g}", "met": met, "note": note})
    return goals


def _cell(value: object) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return "" if value is None else str(value)


def markdown(report: dict) -> str:
    """gpu_results.md: the machine, the goals, then every section with its status and rows."""
    meta = report["meta"]
    lines = [
        "# GPU check",
        "",
        f"Command: `{meta['command']}`  ",
        f"{meta['date']}, {meta['device_name']}, torch {meta['torch']}, CUDA {meta['cuda'] or '(none)'}, "
        f"{meta['scale']}.  ",
        f"Dense bf16 peak {_cell(meta['peak_tflops']) or 'unknown'} TFLOP/s ({meta['peak_source']}). Times: median of "
        f"{meta['repeats']} synchronised calls after {meta['warmup']} warm-up calls (training: {meta['train_repeats']} "
        f"steps after {meta['train_warmup']}); inputs are random, never zeros.",
        "",
        "| goal | value | target | met |",
        "|---|---|---|---|",
    ]
    for g in report["goals"]:
        met = "n/a" if g["met"] is None else "yes" if g["met"] else "NO"
        lines.append(f"| {g['goal']} | {_cell(g['value'])} | {g['target']} | {met} {g['note']} |")
    for name, section in report["sections"].items():
        status = f"{section['status']} in {section['seconds']} s (budget {section['budget_s']} s)"
        lines += ["", f"## {name}", "", status + (f": {section['reason']}" if section["reason"] else "")]
        columns = list(dict.fromkeys(key for row in section["rows"] for key in row))
        if columns:
            lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in section["rows"]]
    return "\n".join(lines) + "\n"


def write_results(report: dict, folder: Path) -> None:
    """gpu_results.json and gpu_results.md in `folder`, the goals judged afresh (called after every section, so
    that a run cut short leaves what it measured)."""
    report["goals"] = judge_goals(report)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gpu_results.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (folder / "gpu_results.md").write_text(markdown(report))
