"""Backend benchmark: one image through each runtime run.py offers, for our camera-aware model with K, and the
official Depth Anything V2 code in the same run when its path is given.

    python benchmarks/bench_backends.py                                    # vits and vitb at 518 x 518
    python benchmarks/bench_backends.py --official ~/Depth-Anything-V2     # + the official code's rows
    python benchmarks/bench_backends.py --quick --out /tmp/backends.json   # smoke run: vits at 70 px

Our rows go through the runners of run.py (`inference.backends`): torch fp32 and bf16 autocast, ONNX Runtime fp32, and
OpenVINO fp32 and bf16 on the graph of export.py (bf16 only where the CPU runs it natively). The official rows
(--official PATH, a clone of github.com/DepthAnything/Depth-Anything-V2): its DepthAnythingV2 in torch fp32 and bf16
autocast, and its graph exported with torch.onnx on ONNX Runtime and OpenVINO, run by official_code.py in a process
of its own (its package is also called depth_anything_v2). Without --official those rows and the
targets that compare with them are left out. Weights are random (speed does not depend on them); every row runs
in a fresh process and reports the median of its timed calls after warm-up. Writes the JSON (--out) and a
markdown table beside it (.md).

With --official on a CPU with native bf16, our graph and the official one also run on OpenVINO bf16 with the same
weights (our camera-less metric model, whose state dict the official class loads), in --rounds interleaved rounds,
with OpenVINO's per-layer profile of both graphs and the largest relative difference of our OpenVINO depth to our
PyTorch fp32 depth. These weights are random with the last projection rescaled so that depth spreads over about
4-16 m (on random weights alone it is nearly constant, which would hide bf16 rounding).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime
import openvino
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import interleave, run_official  # noqa: E402
from official_code import check_official_repo  # noqa: E402
from perf_tools import openvino_profile, time_runs  # noqa: E402
from report import save_report, target_check  # noqa: E402

from depth_anything_v2 import DepthAnythingV2  # noqa: E402
from depth_anything_v2.geometry import canonical_intrinsics  # noqa: E402
from depth_anything_v2.kernels import CACHE_ENV, cpu_model  # noqa: E402
from inference.backends import ModelInfo, OnnxRunner, TorchRunner  # noqa: E402
from inference.onnx_export import export_onnx  # noqa: E402
from util.precision import has_fast_bf16, tune_allocator  # noqa: E402

# Issue 17: the fastest of our rows against OpenVINO bf16 on the official graph, and against official torch bf16.
TARGETS = {"openvino_official": 1.1, "torch_official": 0.45}
# Issue 30: our graph against the official one on OpenVINO bf16, the same weights; its depth against torch fp32.
SAME_WEIGHTS_TARGET, ACCURACY_TARGET = 0.85, 0.01


def write_shared_weights(path: Path, encoder: str, size: int) -> Path:
    """A state dict of our camera-less metric model (the official model's keys) whose last projection is rescaled
    so that its logits have mean 0 and std 0.25 on a random image: depth then spans about 4-16 m."""
    torch.manual_seed(0)
    model = DepthAnythingV2(encoder, max_depth=20.0).eval()
    final = model.depth_head.scratch.output_conv2[2]
    logits = []
    hook = final.register_forward_hook(lambda module, inputs, output: logits.append(output))
    with torch.no_grad():
        final.weight.normal_()
        final.bias.zero_()
        model(torch.randn(1, 3, size, size))
        mean, std = logits[0].mean(), logits[0].std()
        final.weight.mul_(0.25 / std)
        final.bias.fill_(float(-0.25 * mean / std))
    hook.remove()
    torch.save(model.state_dict(), path)
    return path


def _ours(case: dict) -> dict:
    """One row of ours, in this (fresh) process: the runner run.py builds for the backend, a 1-image batch with K.
    With case['weights'], the camera-less model with those weights, and its depth compared with PyTorch fp32."""
    tune_allocator()
    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    model = DepthAnythingV2(case["encoder"], max_depth=20.0, use_camera_intrinsics="weights" not in case).eval()
    if "weights" in case:
        model.load_state_dict(torch.load(case["weights"], weights_only=True), strict=True)
    size = case["size"]
    images = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    K = canonical_intrinsics(size, size)[None].astype(np.float32)
    extra = {}
    with tempfile.TemporaryDirectory() as tmp:
        if case["runtime"] == "torch":
            os.environ[CACHE_ENV] = str(Path(tmp) / "kernels.json")  # kernels timed afresh, as on a new machine
            runner = TorchRunner(model, torch.device("cpu"), case["precision"], kernels={})
        else:
            start = time_runs(lambda: export_onnx(model, Path(tmp) / "model.onnx", size, size), 0, 1)
            extra["export_seconds"] = start[0]
            graph = Path(tmp) / "model.onnx"
            info = ModelInfo.of(model)
            runner = OnnxRunner(case["runtime"], case["precision"], info, lambda height, width: graph)
        times = time_runs(lambda: runner(images, K), case["warmup"], case["repeats"])
        if "weights" in case:
            with torch.inference_mode():
                expected = model(torch.from_numpy(images)).numpy()
            relative = np.abs(runner(images, K) - expected) / np.abs(expected)
            extra.update(max_relative=float(relative.max()), median_relative=float(np.median(relative)))
        if case.get("profile_layers"):
            extra["layer_profile"] = openvino_profile(str(graph), {"image": images}, case["precision"])
    return {**case, "seconds": statistics.median(times), "times": times, **extra}


def run_case(case: dict, official: str | None) -> dict:
    """One row in a fresh process: spawned for ours, official_code.py for the official code."""
    if case["code"] == "official":
        result = run_official({**case, "kind": "forward", "batch": 1}, official)
    else:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            result = pool.submit(_ours, case).result()
    print(json.dumps({k: v for k, v in result.items() if k not in ("times", "config", "layer_profile")}), flush=True)
    return result


def _encoders(args: argparse.Namespace) -> list[str]:
    return args.encoders or (["vits"] if args.quick else ["vits", "vitb"])


def plan(args: argparse.Namespace, native_bf16: bool, weights: dict[str, str] | None = None) -> list[dict]:
    """The rows of one run: per encoder, ours on every backend, then the official code's when --official is given;
    with `weights` ({encoder: state dict file}, --official and native bf16 only), ours and the official graph on
    OpenVINO bf16 with those weights in --rounds interleaved rounds, profiled in the first."""
    size, reps = (70, {"warmup": 1, "repeats": 3}) if args.quick else (518, {"warmup": 2, "repeats": 7})
    runtimes = [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("openvino", "fp32")]
    runtimes += [("openvino", "bf16")] if native_bf16 else []
    cases = []
    for encoder in _encoders(args):
        base = {"encoder": encoder, "size": size, "threads": args.threads, **reps}
        cases += [{**base, "code": "ours", "runtime": r, "precision": p} for r, p in runtimes]
        if args.official:
            cases += [{**base, "code": "official", "runtime": r, "precision": p} for r, p in runtimes]
    pairs = [
        [{"encoder": encoder, "size": size, "threads": args.threads, **reps, "runtime": "openvino", "precision": "bf16",
          "weights": path, "code": code} for code in ("ours", "official")]
        for encoder, path in (weights or {}).items()
    ]  # fmt: skip
    return cases + [{**case, "profile_layers": case["round"] == 0} for case in interleave(pairs, args.rounds)]


def _find(results: list[dict], **match: object) -> dict | None:
    return next((r for r in results if all(r.get(k) == v for k, v in match.items())), None)


def _same_weights_checks(shared: list[dict]) -> list[dict]:
    """Issue 30's targets per encoder on the rows with shared weights: the median over rounds of our OpenVINO bf16
    time over the official graph's in the same round, and the largest relative difference to PyTorch fp32."""
    checks = []
    for encoder in dict.fromkeys(r["encoder"] for r in shared):
        rounds = sorted({r["round"] for r in shared if r["encoder"] == encoder})
        pairs = [[_find(shared, encoder=encoder, code=code, round=n) for code in ("ours", "official")] for n in rounds]
        ratios = [ours["seconds"] / official["seconds"] for ours, official in pairs if ours and official]
        if ratios:
            value = statistics.median(ratios)
            name = f"{encoder}: our graph / the official graph, OpenVINO bf16, same weights"
            checks.append(target_check(name, value, SAME_WEIGHTS_TARGET, False, rounds=ratios))
        errors = [r["max_relative"] for r in shared if r["encoder"] == encoder and "max_relative" in r]
        if errors:
            name = f"{encoder}: largest relative difference of our OpenVINO bf16 depth to our PyTorch fp32 depth"
            value = max(errors)
            checks.append(target_check(name, value, ACCURACY_TARGET, False))
    return checks


def summarize(results: list[dict]) -> list[dict]:
    """The issues' targets per encoder, for the rows measured: [{'target', 'value', 'limit', 'met'}, ('rounds')]."""
    checks = []
    shared = [r for r in results if "weights" in r]
    results = [r for r in results if "weights" not in r]
    for encoder in dict.fromkeys(r["encoder"] for r in results):
        ours = [r for r in results if r["encoder"] == encoder and r["code"] == "ours"]
        fastest = min(ours, key=lambda r: r["seconds"])
        label = f"{encoder}: fastest of ours ({fastest['runtime']} {fastest['precision']})"
        for key, runtime in (("openvino_official", "openvino"), ("torch_official", "torch")):
            reference = _find(results, encoder=encoder, code="official", runtime=runtime, precision="bf16")
            if reference is None:
                reference = _find(results, encoder=encoder, code="official", runtime=runtime, precision="fp32")
            if reference is not None:
                value = fastest["seconds"] / reference["seconds"]
                name = f"{label} / official {runtime} {reference['precision']}"
                limit = TARGETS[key]
                checks.append({"target": name, "value": value, "limit": f"<= {limit}", "met": value <= limit})
    return checks + _same_weights_checks(shared)


def _profile_lines(results: list[dict], top: int = 8) -> list[str]:
    """The per-layer OpenVINO profile of each profiled row: layer types by share, then the slowest layers."""
    lines = []
    for r in results:
        if "layer_profile" not in r:
            continue
        profile = r["layer_profile"]
        total = profile["total_ms"]
        graph = "our graph" if r["code"] == "ours" else "the official graph"
        lines += ["", f"OpenVINO {r['precision']} profile of {graph} ({r['encoder']}, {r['size']} px, same weights): "
                  f"{total:.1f} ms per inference summed over layers.", "",
                  "| layer type | kernel | ms | share |", "|---|---|---|---|"]  # fmt: skip
        lines += [f"| {t} | {k} | {ms:.1f} | {ms / total:.0%} |" for t, k, ms in profile["by_type"][:top]]
        lines += ["", "| slowest layers | type | ms | share |", "|---|---|---|---|"]
        lines += [f"| `{n[:70]}` | {t} | {ms:.2f} | {ms / total:.1%} |" for n, t, _, ms in profile["layers"][:top]]
    return lines


def markdown(report: dict) -> str:
    """The run as a markdown table, the targets and the OpenVINO profiles."""
    meta = report["meta"]
    lines = [
        f"Command: `{meta['command']}`  ",
        f"{meta['date']}, {meta['cpu']}, torch {meta['torch']}, onnxruntime {meta['onnxruntime']}, openvino "
        f"{meta['openvino']}, {meta['threads']} torch threads, native bf16: {meta['native_bf16']}; load average "
        f"{meta['load_average_before'][0]:.2f} before the run. Batch 1, one image with K (ours) except the rows "
        "with shared weights (our camera-less model and the official one, the same state dict; round: the "
        "interleaved round; max rel: the largest relative difference of the depth to our PyTorch fp32 depth).",
        "",
        "| encoder | code | runtime | precision | size px | median s | export s | weights | round | max rel |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        export = f"{r['export_seconds']:.1f}" if "export_seconds" in r else ""
        weights = "shared" if "weights" in r else "own"
        error = f"{r['max_relative']:.4f}" if "max_relative" in r else ""
        lines.append(f"| {r['encoder']} | {r['code']} | {r['runtime']} | {r['precision']} | {r['size']} | "
                     f"{r['seconds']:.4f} | {export} | {weights} | {r.get('round', '')} | {error} |")  # fmt: skip
    lines += ["", "| target | measured | required | met | per round |", "|---|---|---|---|---|"]
    for c in report["targets"]:
        rounds = " ".join(f"{v:.3f}" for v in c.get("rounds", []))
        lines.append(f"| {c['target']} | {c['value']:.3f} | {c['limit']} | {'yes' if c['met'] else 'NO'} | {rounds} |")
    if not report["targets"]:
        lines.append("| (needs the official rows: --official PATH) | | | | |")
    return "\n".join(lines + _profile_lines(report["results"])) + "\n"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", help="default: vits vitb (--quick: vits)")
    parser.add_argument("--official", help="a clone of the official Depth-Anything-V2 repository: adds its rows")
    parser.add_argument("--quick", action="store_true", help="smoke run: 70 px, 3 timed calls")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch intra-op threads")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "backend_results.json"), help="JSON (.md beside)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the rows with shared weights")
    return parser


def run_meta(args: argparse.Namespace, native_bf16: bool, load_before: tuple) -> dict:
    """Where and how the run was made: command, date, machine, versions, threads, load before it."""
    return {
        "command": "python benchmarks/bench_backends.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino.__version__,
        "threads": args.threads,
        "native_bf16": native_bf16,
        "load_average_before": load_before,
    }


def main(args: argparse.Namespace) -> dict:
    """Run every row of `plan`, write the JSON and the markdown table, return the report."""
    if args.official:
        check_official_repo(args.official)
    native_bf16 = has_fast_bf16(torch.device("cpu"))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        size = 70 if args.quick else 518
        shared = args.official and native_bf16
        weights = {e: str(write_shared_weights(Path(tmp) / f"{e}.pth", e, size)) for e in _encoders(args) if shared}
        results = [run_case(case, args.official) for case in plan(args, native_bf16, weights)]
    report = {"meta": run_meta(args, native_bf16, load_before), "results": results, "targets": summarize(results)}
    save_report(report, args.out, markdown(report))
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
