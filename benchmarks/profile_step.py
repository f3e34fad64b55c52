"""Where a training step's time goes: torch.profiler over steps of the benchmark's train cases, by operator group.

    python benchmarks/profile_step.py --out benchmarks/profile_results.md      # bf16, 518 px, batch 2
    python benchmarks/profile_step.py --kernels attention=sdpa --precision bf16
    python benchmarks/profile_step.py --official ~/Depth-Anything-V2             # + the official step

Profiles the official recipe (camera-less, backbone trained) and the camera student (frozen backbone, inject
0) as bench.py builds them, kernels chosen as train.py chooses them unless --kernels forces them; with
--official PATH also the official code's step of the same recipe (benchmarks/official_code.py). Self CPU time
per operator, summed into groups (attention matmuls, linears, convolutions, softmax, copies, norms, ...), per step.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import _configure, _train, run_official  # noqa: E402
from official_code import check_official_repo  # noqa: E402

from depth_anything_v2.kernels import machine_key  # noqa: E402

# Operator name fragments -> group, first match wins (self time, so a parent op's children count on their own).
GROUPS = [
    ("attention (SDPA kernels)", ("scaled_dot_product", "flash_attention")),
    ("attention / batched matmuls", ("aten::bmm", "aten::baddbmm")),
    ("linears (mm / addmm)", ("aten::addmm", "aten::mm", "aten::linear")),
    ("convolutions", ("convolution", "mkldnn_conv", "conv2d", "conv_transpose")),
    ("softmax", ("softmax",)),
    ("dtype / layout copies", ("aten::copy_", "aten::_to_copy", "aten::clone", "aten::contiguous", "aten::to")),
    ("layer norm", ("layer_norm",)),
    ("gelu / relu / sigmoid", ("gelu", "relu", "sigmoid", "threshold")),
    ("interpolation", ("upsample", "grid_sampler")),
    ("optimizer", ("_foreach", "adam", "lerp", "addcdiv", "addcmul", "sqrt")),
    ("elementwise (add, mul, ...)", ("aten::add", "aten::mul", "aten::sub", "aten::div", "aten::cat", "aten::sum")),
]


def group_of(name: str) -> str:
    return next((group for group, keys in GROUPS for key in keys if key in name), "other")


def profile_case(
    case: dict, steps: int, official: str | None = None
) -> tuple[dict, list[tuple[str, float, int]], dict[str, float]]:
    """(the bench result, [(op, self ms per step, calls per step)] by time, {group: self ms per step}); the
    official code's step (official_code.py, its own process) when `official` is given."""
    if official:
        result = run_official({**case, "profile_steps": steps}, official)
        events = result["ops"]
    else:
        tables = {}

        def measure(step, case):
            step()  # warm-up: oneDNN primitive creation, allocator
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(steps):
                    step()
            tables["events"] = [(e.key, e.self_cpu_time_total, e.count) for e in prof.key_averages()]
            return [prof.profiler.total_average().self_cpu_time_total / 1e6 / steps], 1.0

        _configure(case)
        result = _train(case, measure)
        events = tables["events"]
    ops = sorted(((name, us / 1e3 / steps, count // steps) for name, us, count in events), key=lambda op: -op[1])
    groups: dict[str, float] = defaultdict(float)
    for name, ms, _ in ops:
        groups[group_of(name)] += ms
    return result, ops, dict(sorted(groups.items(), key=lambda g: -g[1]))


def main(args: argparse.Namespace) -> str:
    torch.manual_seed(0)
    base = {"code": "ours", "threads": args.threads, "size": args.size, "batch": args.batch, "encoder": "vits",
            "kind": "train", "teacher": None, "kernels": args.kernels, "precision": args.precision,
            "warmup": 0, "repeats": 1}  # fmt: skip
    recipe = {**base, "name": "official recipe", "camera": False, "frozen": False, "inject": 0}
    cases = [(recipe, None), ({**base, "name": "camera student", "camera": True, "frozen": True, "inject": 0}, None)]
    if args.official:
        check_official_repo(args.official)
        cases.append(({**recipe, "code": "official", "name": "official recipe, official code"}, args.official))
    lines = [
        f"# Profile of one training step ({args.precision}, vits, batch {args.batch}, {args.size} px)",
        "",
        f"`python benchmarks/profile_step.py {' '.join(sys.argv[1:])}` on {machine_key(torch.device('cpu'))}; "
        f"self CPU time per step, mean of {args.steps} profiled steps after one warm-up (the profiler adds a "
        "little to each operator).",
    ]
    for case, official in cases:
        result, ops, groups = profile_case(case, args.steps, official)
        total = sum(groups.values())
        kernels = f" (kernels: {result['chosen']})" if "chosen" in result else ""
        lines += ["", f"## {case['name']}: {total:.0f} ms per step{kernels}", ""]
        lines += ["| group | ms per step | share |", "|---|---|---|"]
        lines += [f"| {group} | {ms:.0f} | {ms / total:.0%} |" for group, ms in groups.items()]
        lines += ["", "| operator | ms per step | calls per step | group |", "|---|---|---|---|"]
        lines += [f"| `{name}` | {ms:.1f} | {calls} | {group_of(name)} |" for name, ms, calls in ops[: args.top]]
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return text


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument("--size", type=int, default=518, help="input side in px, a multiple of 14")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--kernels", default="auto", help="as train.py's --kernels")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--top", type=int, default=15, help="operators listed per case")
    parser.add_argument("--out", help="also write the markdown here")
    parser.add_argument("--official", help="a clone of the official repository: also profile its training step")
    return parser


if __name__ == "__main__":
    main(get_args_parser().parse_args())
