"""Time the official Depth Anything V2 code (a yardstick; nothing of it enters this repository).

    python benchmarks/official_code.py OFFICIAL_REPO '{"kind": "forward", "encoder": "vits", ...}'

Run by bench.py and bench_backends.py in a process of its own, which prints one JSON line. The official
`depth_anything_v2/` folders have no `__init__.py`, so our installed package of the same name would win the
import; this process takes our checkout off `sys.path` and binds the name to the official folder explicitly,
then checks where the class came from. The official `dpt.py` imports torchvision for `Compose` only (used by
`infer_image`, which is not timed): a stub stands in. The metric model and SiLog loss are those of the official
`metric_depth/` (the training recipe of its train.py: AdamW, backbone lr x1, head lr x10, weight decay 0.01).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import statistics
import sys
import time
import types
from contextlib import nullcontext
from pathlib import Path

HERE = Path(__file__).resolve().parent
OURS = HERE.parent
CONFIGS = {
    "vits": {"features": 64, "out_channels": [48, 96, 192, 384]},
    "vitb": {"features": 128, "out_channels": [96, 192, 384, 768]},
    "vitl": {"features": 256, "out_channels": [256, 512, 1024, 1024]},
}


def check_official_repo(path: str) -> None:
    """SystemExit unless `path` is a clone of the official repository (it has metric_depth/)."""
    if not (Path(path) / "metric_depth" / "depth_anything_v2" / "dpt.py").is_file():
        raise SystemExit(f"--official {path}: no metric_depth/depth_anything_v2/dpt.py there; give the official repo")


class Compose:
    """Stand-in for torchvision.transforms.Compose: apply the steps in order."""

    def __init__(self, steps: list) -> None:
        self.steps = steps

    def __call__(self, sample: object) -> object:
        for step in self.steps:
            sample = step(sample)
        return sample


def import_official(repo: Path):
    """(DepthAnythingV2, SiLogLoss) of the official metric_depth code in `repo`."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != OURS]
    for name in [n for n in sys.modules if n == "depth_anything_v2" or n.startswith("depth_anything_v2.")]:
        del sys.modules[name]
    transforms = types.ModuleType("torchvision.transforms")
    transforms.Compose = Compose
    torchvision = types.ModuleType("torchvision")
    torchvision.transforms = transforms
    sys.modules.update({"torchvision": torchvision, "torchvision.transforms": transforms})
    package = types.ModuleType("depth_anything_v2")
    package.__path__ = [str(repo / "metric_depth" / "depth_anything_v2")]
    sys.modules["depth_anything_v2"] = package
    DepthAnythingV2 = importlib.import_module("depth_anything_v2.dpt").DepthAnythingV2  # the official one
    source = Path(sys.modules[DepthAnythingV2.__module__].__file__).resolve()
    if repo.resolve() not in source.parents:
        raise SystemExit(f"imported DepthAnythingV2 from {source}, not from the official code in {repo}")
    spec = importlib.util.spec_from_file_location("official_loss", repo / "metric_depth" / "util" / "loss.py")
    loss = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loss)
    return DepthAnythingV2, loss.SiLogLoss


def onnx_runner(model, x, runtime: str, precision: str):
    """The official model exported to ONNX (dynamo exporter) and run on onnxruntime or OpenVINO (bf16 hint):
    (a function running it, the .onnx path)."""
    import tempfile

    import torch

    path = tempfile.mkdtemp() + "/official.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, input_names=["image"], output_names=["depth"], dynamo=True)
    feed = {"image": x.numpy()}
    if runtime == "onnxruntime":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return (lambda: session.run(None, feed)), path
    import openvino as ov

    hint = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    compiled = ov.Core().compile_model(path, "CPU", hint)
    return (lambda: compiled(feed)), path


def profile_ops(run, steps: int) -> list[tuple[str, float, int]]:
    """[(operator, self CPU microseconds, calls)] over `steps` calls of run after one warm-up call."""
    from torch.profiler import ProfilerActivity, profile

    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            run()
    return [(e.key, e.self_cpu_time_total, e.count) for e in prof.key_averages()]


def main(repo: Path, case: dict) -> dict:
    DepthAnythingV2, SiLogLoss = import_official(repo)
    sys.path.insert(0, str(HERE))
    import torch
    from perf_tools import openvino_profile, peak_rss_bytes, time_runs

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    model = DepthAnythingV2(encoder=case["encoder"], **CONFIGS[case["encoder"]], max_depth=20.0)
    if case.get("weights"):  # the same weights as our row's (a state dict of our camera-less model)
        model.load_state_dict(torch.load(case["weights"], weights_only=True), strict=True)
    bf16 = case["precision"] == "bf16"
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    B, size = case["batch"], case["size"]
    x = torch.randn(B, 3, size, size)
    graph = None
    if case["kind"] == "forward" and case.get("runtime", "torch") != "torch":
        run, graph = onnx_runner(model.eval(), x, case["runtime"], case["precision"])
    elif case["kind"] == "forward":
        model.eval()

        def run():
            with torch.inference_mode(), autocast:
                return model(x)

    else:
        model.train()
        depth = torch.rand(B, size, size) * 9 + 1
        valid = (depth >= 0.001) & (depth <= 20.0)
        criterion = SiLogLoss()
        named = list(model.named_parameters())
        optimizer = torch.optim.AdamW(
            [
                {"params": [p for n, p in named if "pretrained" in n], "lr": 5e-6},
                {"params": [p for n, p in named if "pretrained" not in n], "lr": 5e-5},
            ],
            lr=5e-6,
            betas=(0.9, 0.999),
            weight_decay=0.01,
        )

        def run():
            with autocast:
                pred = model(x)
            loss = criterion(pred, depth, valid)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    if case.get("profile_steps"):
        return {**case, "ops": profile_ops(run, case["profile_steps"])}
    wall, cpu = time.perf_counter(), time.process_time()
    times = time_runs(run, case["warmup"], case["repeats"])
    cpu_share = (time.process_time() - cpu) / ((time.perf_counter() - wall) * case["threads"])
    seconds, peak = statistics.median(times), peak_rss_bytes() / 1e9
    result = {**case, "seconds": seconds, "times": times, "cpu_share": cpu_share, "peak_rss_gb": peak}
    if case.get("profile_layers") and case.get("runtime") == "openvino":
        result["layer_profile"] = openvino_profile(graph, {"image": x.numpy()}, case["precision"])
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), json.loads(sys.argv[2]))), flush=True)
