"""The GPU check of issue 30, one command for the few minutes a GPU is lent: vitl at 518 px, bf16 inference and a
training step, CUDA against CPU, attention with every SDPA backend; writes gpu_results.json and gpu_results.md.

    python benchmarks/gpu_check.py --out benchmarks             # on a CUDA GPU: at most 8 minutes on an H200
    python benchmarks/gpu_check.py --smoke --out /tmp/check     # vits, 56 px, batches of 1-2, on CPU: seconds
    python benchmarks/gpu_check.py --sections training --peak-tflops 756 --out /tmp/check   # one section again

Each section runs under its own time budget (`gpu_sections.SECTION_BUDGETS`, all within --budget): over it, the rows
measured so far are kept and the section is marked partial; an error is recorded and the next section runs. The
results files are rewritten after every section, so a run cut short leaves what it measured.
- ceiling: a bf16 matmul on random data, the practical compute ceiling (`perf_tools.matmul_gflops`).
- attention: q, k, v of the model's shape (1370 tokens at 518 px) in bf16 through each SDPA backend alone, forward
  and backward: non-finite values and the error against float64; then the model's bf16 forward under each.
- accuracy: depth on the device against the CPU's fp32 depth, same weights and input: fp32 with cuDNN's TF32 off
  (limit 1e-4 relative) and as torch sets it (shown, not judged); bf16 (limit 1 %).
- inference: batches of 1 and 32 in bf16, eager with explicit and with SDPA attention (the head's layout timed as
  the scripts time it): ms per image, images/s, TFLOP/s.
- training: the training guide's step (camera student, frozen backbone, inject layer 0, frozen bf16 teacher, bf16
  autocast, AdamW) at the largest batch up to 32 that fits, found by trying: model FLOP utilisation against the
  dense bf16 peak (FLOPs counted with explicit attention on one image, times the batch) and peak memory.
- compiled: the inference rows through torch.compile with frozen weights (`util.precision.compile_frozen`, as
  `run.py --compile`), with the compile time.
- graphs: one image replayed as a CUDA graph, eager and compiled; last, as a failed capture may upset the device.
The model is the camera-aware metric model (20 m) with seeded random weights; inputs are random images and a pinhole
K. Without CUDA only --smoke runs, and it skips compiling (minutes on a CPU) and the CUDA graphs.
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_report import machine, peak_tflops, run_section, write_results  # noqa: E402
from gpu_sections import ROOT, SECTION_BUDGETS, SECTIONS, Check  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks"), help="folder for gpu_results.json and .md")
    parser.add_argument("--smoke", action="store_true", help="vits, 56 px, batches of 1-2: a check of the code paths")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the GPU (default: by its name)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all sections together")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS), help="run only these")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad flags before any work (nothing is written)."""
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit(
            f"no CUDA device here (torch {torch.__version__}): the GPU check measures a GPU; on a CPU run "
            "`python benchmarks/gpu_check.py --smoke --out FOLDER`, a check of its code paths"
        )
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise SystemExit(f"--out {args.out} is a file; give a folder (gpu_results.json and .md are written in it)")
    for flag, value in (("--peak-tflops", args.peak_tflops), ("--budget", args.budget)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise SystemExit(f"{flag} {value}: give a positive number")


def main(args: argparse.Namespace) -> dict:
    check_args(args)
    start = time.perf_counter()
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "a CPU"
    peak, peak_source = peak_tflops(device_name, args.peak_tflops)
    check = Check(args, peak)
    meta = machine(check.device, args, check.s, peak, peak_source)
    report = {"meta": meta, "goals": [], "sections": {}}
    try:
        for name, fn in SECTIONS.items():
            left = args.budget - (time.perf_counter() - start)
            skip = None
            if name not in args.sections:
                skip = f"not asked for (--sections {' '.join(args.sections)})"
            elif left < 5:
                skip = f"the run's {args.budget:g} s (--budget) were spent"
            elif name == "compiled" and not check.cuda:
                skip = "compiling takes minutes on a CPU, beyond a smoke run; the run on a GPU compiles"
            elif name == "graphs" and not check.cuda:
                skip = "CUDA graphs need a CUDA device"
            section = run_section(report, name, functools.partial(fn, check), min(SECTION_BUDGETS[name], left), skip)
            gc.collect()
            if check.cuda:
                torch.cuda.empty_cache()
            write_results(report, Path(args.out))
            print(f"{name}: {section['status']} in {section['seconds']} s {section['reason'] or ''}", flush=True)
    finally:
        shutil.rmtree(check.tmp, ignore_errors=True)
    for goal in report["goals"]:
        met = "n/a" if goal["met"] is None else "yes" if goal["met"] else "NO"
        print(f"{goal['goal']}: {goal['value']} (target {goal['target']}) met: {met}")
    print(f"wrote {Path(args.out) / 'gpu_results.md'} and .json in {time.perf_counter() - start:.0f} s")
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
