"""Speed benchmark: matmul ceiling, forward latency and FLOP/s, training steps, peak memory, data loading, and
the official code beside ours.

    python benchmarks/bench.py --official ~/Depth-Anything-V2   # full run, ratios against the official code
    python benchmarks/bench.py --quick --out /tmp/quick.json      # smoke run at 70 px
    python benchmarks/bench.py --encoders vits vitb
    python benchmarks/bench.py --official ~/Depth-Anything-V2 --encoders vits --rows forward step kernels

Every configuration runs in a fresh process (peak RSS is a process-lifetime high-water mark), times the median of
N calls after warm-up, and is compared with the matmul ceiling measured in the same run. Our rows choose their
kernels as train.py and run.py do (`depth_anything_v2.kernels.tune_kernels`, timed afresh in each process) unless
a row forces them. The official rows (--official PATH, a clone of github.com/DepthAnything/Depth-Anything-V2) run
`official_code.py` in a process of their own, with the same allocator settings as ours. Writes the JSON (--out)
and a markdown table next to it (same name, .md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
sys.path.insert(0, str(ROOT))

from bench_loader import measure_loader  # noqa: E402
from model_flops import count_model_flops  # noqa: E402
from official_code import check_official_repo  # noqa: E402
from perf_tools import matmul_gflops, peak_rss_bytes, time_runs  # noqa: E402
from report import markdown, save_report, summarize  # noqa: E402

from depth_anything_v2.dpt import DepthAnythingV2  # noqa: E402
from depth_anything_v2.kernels import autocast_context, cpu_model, machine_key, parse_kernels, tune_kernels  # noqa: E402
from util.distill import FrozenTeacher, student_loss  # noqa: E402
from util.optim import build_optimizer, set_lr  # noqa: E402
from util.precision import GLIBC_TUNABLES, compile_frozen, tune_allocator  # noqa: E402


def _configure(case: dict) -> None:
    """Process start: allocator and threads, before torch allocates its large buffers."""
    if case.get("allocator", "tuned") == "tuned":
        tune_allocator()
    torch.set_num_threads(case["threads"])


def _choose_kernels(model: torch.nn.Module, case: dict, mode: str) -> dict:
    """Kernels as the scripts choose them (timed here, with a cache of this process only) or as the row forces;
    returns the choice and the tuning time for the result."""
    B, size = case["batch"], case["size"]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        precision = case["precision"]
        choice = tune_kernels(model, B, size, size, precision, mode, parse_kernels(case["kernels"]), Path(tmp) / "k")
    return {"chosen": choice.describe(), "tune_seconds": time.perf_counter() - start}


def _timed(fn, case: dict) -> tuple[list[float], float]:
    """time_runs, plus the share of the threads' CPU time this process got: well below 1 means other processes
    were competing for the cores and the times are inflated."""
    wall, cpu = time.perf_counter(), time.process_time()
    times = time_runs(fn, case["warmup"], case["repeats"])
    return times, (time.process_time() - cpu) / ((time.perf_counter() - wall) * case["threads"])


def _result(case: dict, times: list[float], cpu_share: float, **extra: object) -> dict:
    seconds, peak_rss_gb = statistics.median(times), peak_rss_bytes() / 1e9
    return {**case, "seconds": seconds, "times": times, "cpu_share": cpu_share, "peak_rss_gb": peak_rss_gb, **extra}


def _compile(model: torch.nn.Module, frozen: bool = False) -> torch.nn.Module:
    """torch.compile without inductor's on-disk cache, so that the reported compile time is a first compile.
    frozen: in place with frozen weights, for inference (`util.precision.compile_frozen`)."""
    import torch._inductor.config as inductor_config

    inductor_config.force_disable_caches = True
    return compile_frozen(model) if frozen else torch.compile(model)


def _matmul(case: dict) -> dict:
    _configure(case)
    return {**case, "gflops": matmul_gflops(getattr(torch, case["dtype"]), case["n"])}


def _forward(case: dict) -> dict:
    """Inference latency of one (batch, 3, size, size) input; FLOPs counted on the first warm-up call."""
    _configure(case)
    torch.manual_seed(0)
    model = DepthAnythingV2(case["encoder"], max_depth=20.0).eval()
    chosen = _choose_kernels(model, case, "inference")
    x = torch.randn(case["batch"], 3, case["size"], case["size"])

    def run():
        with torch.inference_mode(), autocast_context(CPU, case["precision"]):
            return model(x)

    flops = count_model_flops(model, run)
    extra = dict(chosen)
    if case.get("compile"):
        model = _compile(model, frozen=True)
        extra["compile_seconds"] = time_runs(run, 0, 1)[0]
    if case.get("allocator") == "late":
        tune_allocator()
    times, cpu_share = _timed(run, case)
    return _result(case, times, cpu_share, flops=flops, gflops=flops / statistics.median(times) / 1e9, **extra)


def _train(case: dict, measure: Callable[[Callable[[], object], dict], tuple[list[float], float]] = _timed) -> dict:
    """One optimisation step of a metric student (camera-aware unless case['camera'] is False), plus a frozen teacher
    when case['teacher']: 'bf16' or 'fp32' runs it every step, 'cached' reads its prediction from an .npy file
    (`train.py --cache-teacher`, where the data loader reads and warps it). AdamW from `util.optim.build_optimizer`
    (head lr x10, weight decay 0.01). FLOPs are counted on one more step after the timed ones. `measure(step, case)`
    runs the steps and returns (seconds per step, CPU share): `_timed`, or a profiler (profile_step.py)."""
    _configure(case)
    torch.manual_seed(0)
    camera = case.get("camera", True)
    model = DepthAnythingV2(
        case["encoder"], max_depth=20.0, use_camera_intrinsics=camera, cam_token_inject_layer=case["inject"]
    )
    model.pretrained.requires_grad_(not case["frozen"])
    model.pretrained.mask_token.requires_grad_(False)
    model.set_grad_checkpointing(case.get("grad_ckpt", False))
    model.depth_head.fp32_island_in_training = case.get("fp32_island", False)
    model.train()
    chosen = _choose_kernels(model, case, "training")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(model, argparse.Namespace(lr=5e-6, weight_decay=0.01))
    set_lr(optimizer, 5e-6)
    B, size = case["batch"], case["size"]
    f = 0.8 * size
    batch = {
        "image": torch.randn(B, 3, size, size),
        "depth": torch.rand(B, size, size) * 9 + 1,
        "depth_valid": torch.ones(B, size, size, dtype=torch.bool),
        "image_valid": torch.ones(B, size, size, dtype=torch.bool),
        "intrinsics": torch.tensor([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1]]).expand(B, 3, 3),
        "has_intrinsics": torch.ones(B, dtype=torch.bool),
    }
    with tempfile.TemporaryDirectory() as tmp:
        teacher = None
        if case["teacher"]:
            path = Path(tmp) / "teacher.pth"
            torch.save(DepthAnythingV2(case["encoder"], max_depth=20.0).state_dict(), path)
            bf16 = case["teacher"] != "fp32"
            teacher = FrozenTeacher(str(path), CPU, case["encoder"], 20.0, bf16=bf16)
            precision = "bf16" if bf16 else "fp32"
            tune_kernels(teacher.model, B, size, size, precision, "inference", path=Path(tmp) / "kernels.json")
            if case.get("compile_teacher"):
                _compile(teacher.model, frozen=True)
        cache = Path(tmp) / "teacher_depth.npy"
        if case["teacher"] == "cached":
            np.save(cache, teacher(batch["image"]).numpy())

        def teacher_depth():
            if case["teacher"] == "cached":
                return torch.from_numpy(np.load(cache))
            return teacher(batch["image"]) if teacher is not None else None

        forward = model  # rebound to the compiled model for compile cases; step() reads it at call time

        def step():
            with autocast_context(CPU, case["precision"]):
                pred = forward(batch["image"], batch["intrinsics"], batch["has_intrinsics"])
                target = teacher_depth()
            loss, _ = student_loss(pred.float(), batch, 0.1, 20.0, target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        extra = dict(chosen)
        if case.get("compile"):
            forward = _compile(model)
        if case.get("compile") or case.get("compile_teacher"):
            extra["compile_seconds"] = time_runs(step, 0, 1)[0]
        times, cpu_share = measure(step, case)
        result = _result(case, times, cpu_share, **extra)
        if case["teacher"] in ("bf16", "fp32"):
            result["teacher_seconds"] = statistics.median(time_runs(teacher_depth, 1, case["repeats"]))
        # Counted last: the explicit attention of the counting step would raise the peak memory measured above.
        forward = model
        result["flops"] = count_model_flops(model, step)
    result["gflops"] = result["flops"] / result["seconds"] / 1e9
    return result


def _loader(case: dict) -> dict:
    _configure(case)
    # This process was spawned, which makes spawn the default for its DataLoader workers; train.py runs under the
    # platform default (fork on Linux), so measure that.
    mp.set_start_method(mp.get_all_start_methods()[0], force=True)
    return {**case, **measure_loader(case["size"], case["workers"], case["samples"], case["repeats"])}


RUNNERS = {"matmul": _matmul, "forward": _forward, "train": _train, "loader": _loader}


def run_official(case: dict, official: str) -> dict:
    """One row of the official code (official_code.py) in its own process, allocator set as in ours."""
    argv = [sys.executable, str(ROOT / "benchmarks" / "official_code.py"), official, json.dumps(case)]
    env = {**os.environ, "GLIBC_TUNABLES": GLIBC_TUNABLES}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    if done.returncode:
        raise SystemExit(f"the official code failed on {case}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_case(case: dict, official: str | None = None) -> dict:
    """Run one configuration in a fresh process (spawned for ours); GLIBC_TUNABLES is set for allocator 'env'."""
    if case.get("code") == "official":
        result = run_official(case, official)
        print(json.dumps({k: v for k, v in result.items() if k != "times"}), flush=True)
        return result
    env_before = os.environ.get("GLIBC_TUNABLES")
    if case.get("allocator") == "env":
        os.environ["GLIBC_TUNABLES"] = GLIBC_TUNABLES
    try:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            result = pool.submit(RUNNERS[case["kind"]], case).result()
    finally:
        if env_before is None:
            os.environ.pop("GLIBC_TUNABLES", None)
        else:
            os.environ["GLIBC_TUNABLES"] = env_before
    print(json.dumps({k: v for k, v in result.items() if k != "times"}), flush=True)
    return result


def run_settings(quick: bool) -> dict:
    """Input side (px), train batch, warm-up and timed calls (forward; train steps after one warm-up step), matmul
    size: full run or --quick smoke run."""
    if quick:
        return {"size": 70, "batch": 2, "warmup": 1, "repeats": 3, "train_repeats": 3, "matmul_n": 1024}
    return {"size": 518, "batch": 2, "warmup": 2, "repeats": 7, "train_repeats": 5, "matmul_n": 2048}


# Forced kernel combinations timed beside the tuned rows, to show what the tuner's choice is worth.
KERNEL_COMBOS = [f"attention={a},head_layout={h}" for a in ("sdpa", "explicit") for h in ("channels_last", "nchw")]


def interleave(groups: list[list[dict]], rounds: int) -> list[dict]:
    """Rows compared with each other, run in `rounds` rounds, one process per row and round, in an order that
    turns around every round (A B C, C B A, ...): a machine that slows down or speeds up during the run then
    weighs on every row alike, and each ratio is taken between rows measured minutes apart at most."""
    cases = []
    for r in range(rounds):
        for group in groups:
            cases += [{**case, "round": r} for case in (group if r % 2 == 0 else group[::-1])]
    return cases


ROW_GROUPS = ("forward", "step", "kernels", "allocator", "compile", "variants", "loader")


def plan(args: argparse.Namespace) -> list[dict]:
    """The list of configurations of one run: the compared groups in rounds, then the other rows once; only the
    groups in args.rows (ROW_GROUPS; the matmul ceiling always)."""
    settings = run_settings(args.quick)
    size, batch = settings["size"], settings["batch"]
    reps = {"warmup": settings["warmup"], "repeats": settings["repeats"]}
    rows = set(args.rows)
    compile_rows = "compile" in rows and not (args.quick or args.no_compile)
    base = {"code": "ours", "threads": args.threads, "size": size, "kernels": "auto", "round": 0}
    official = {"code": "official"} if args.official else None
    ceiling = [{**base, "kind": "matmul", "dtype": dt, "n": settings["matmul_n"]} for dt in ("float32", "bfloat16")]
    train_reps = {"warmup": 1, "repeats": settings["train_repeats"]}
    train = {**base, **train_reps, "kind": "train", "encoder": "vits", "batch": batch, "teacher": None, "frozen": True}
    # The official training recipe: a camera-less metric model, backbone trained, SiLog, AdamW.
    recipe = {**train, "name": "official recipe", "camera": False, "frozen": False, "inject": 0}
    student = {**train, "name": "student", "inject": 0}
    compared, once = [], []
    for encoder in args.encoders if "forward" in rows else []:
        fwd_reps = {"vitl": {"warmup": 1, "repeats": 3}, "vitg": {"warmup": 1, "repeats": 3}}.get(encoder, reps)
        for precision in ("fp32", "bf16"):
            forward = {**base, **fwd_reps, "kind": "forward", "encoder": encoder, "precision": precision, "batch": 1}
            if official and encoder in ("vits", "vitb"):
                compared.append([forward, {**forward, **official}])
            else:
                once.append(forward)
    for precision in ("fp32", "bf16") if "step" in rows else ():
        pair = [{**recipe, "precision": precision}]
        if official:
            pair.append({**recipe, **official, "precision": precision})
        if precision == "bf16":  # the camera student, and the recipe with the head's fp32 island kept in training
            pair += [{**student, "precision": precision}, {**recipe, "precision": precision, "fp32_island": True}]
        compared.append(pair)
    vits_fwd = {**base, **reps, "kind": "forward", "encoder": "vits", "batch": 1}
    if "kernels" in rows:
        for precision in ("fp32", "bf16"):
            tuned = {**vits_fwd, "precision": precision}
            compared.append([tuned] + [{**tuned, "kernels": combo} for combo in KERNEL_COMBOS])
        tuned_step = {**recipe, "precision": "bf16"}
        compared.append([tuned_step] + [{**tuned_step, "kernels": combo} for combo in KERNEL_COMBOS])
    for allocator in ("default", "late", "env") if "allocator" in rows else ():
        once.append({**vits_fwd, "precision": "fp32", "allocator": allocator})
    for precision in ("fp32", "bf16") if compile_rows else ():
        once.append({**vits_fwd, "precision": precision, "compile": True})
    variants = [
        {"name": "student", "inject": 0, "precision": "fp32"},
        {"name": "student+teacher(bf16)", "inject": 0, "teacher": "bf16"},
        {"name": "student+teacher(cached)", "inject": 0, "teacher": "cached"},
        {"name": "student+teacher(fp32)", "inject": 0, "teacher": "fp32"},
        {"name": "unfrozen", "inject": 0, "frozen": False},
        {"name": "unfrozen+ckpt", "inject": 0, "frozen": False, "grad_ckpt": True},
        {"name": "inject6", "inject": 6},
        {"name": "student, glibc default allocator", "inject": 0, "allocator": "default"},
    ]
    if compile_rows:
        variants.insert(2, {"name": "student+teacher(bf16, compiled)", "inject": 0, "teacher": "bf16",
                            "compile_teacher": True})  # fmt: skip
    for variant in variants if "variants" in rows else []:
        for precision in ("fp32", "bf16") if "precision" not in variant else (variant["precision"],):
            once.append({**train, **variant, "precision": precision})
    if compile_rows:
        once.append({**train, "name": "student, torch.compile", "inject": 0, "compile": True, "precision": "bf16"})
    for workers in (0, 2) if "loader" in rows else ():
        loader = {"samples": 8, "repeats": 1} if args.quick else {"samples": 64, "repeats": 5}
        once.append({**base, **loader, "kind": "loader", "size": 518, "workers": workers})
    # The ceiling at the start and the end: the better of the two is used, so a busy moment does not flatter ratios.
    return ceiling + interleave(compared, args.rounds) + once + ceiling


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--encoders", nargs="+", help="forward-latency encoders (default: vits vitb vitl; --quick: vits)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 70 px, 1024^3 matmul, 3 repeats")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"), help="JSON path (.md beside it)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch intra-op threads")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (--quick skips them)")
    parser.add_argument(
        "--official", help="a clone of the official Depth-Anything-V2 repository: adds its rows and the ratios"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the compared rows (ours / official, kernel choices)"
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=ROW_GROUPS,
        default=list(ROW_GROUPS),
        help="groups of rows to run (default: all): forward latency, the official recipe's training step, forced "
        "kernel combinations, allocator settings, torch.compile, training variants, data loader",
    )
    return parser


def main(args: argparse.Namespace) -> dict:
    """Run every configuration of `plan(args)`, write the JSON and the markdown table, return the report."""
    if args.encoders is None:
        args.encoders = ["vits"] if args.quick else ["vits", "vitb", "vitl"]
    if args.official:
        check_official_repo(args.official)
    cases = plan(args)
    load_before = os.getloadavg()
    results = [run_case(case, args.official) for case in cases]
    meta = {
        "command": "python benchmarks/bench.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "machine": machine_key(CPU),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "rounds": args.rounds,
        "rows": args.rows,
        "allocator": f"util.precision.tune_allocator() at process start ({GLIBC_TUNABLES}) unless a row says otherwise",
        **run_settings(args.quick),
        "cuda": torch.cuda.is_available(),
        # Other processes on the machine inflate every time; compare ratios taken in one quiet run.
        "load_average_before": load_before,
    }
    report = {"meta": meta, "results": results, "targets": summarize(results)}
    save_report(report, args.out, markdown(report))
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
