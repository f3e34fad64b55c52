"""Data-loader speed: training samples per second per worker, 640x480 jpg + 16-bit png depth + K -> 518 crop.

    python benchmarks/bench_loader.py                         # workers 0 and 1, writes benchmarks/loader_results.json
    python benchmarks/bench_loader.py --workers 0 1 2 --samples 96 --repeats 7 --out /tmp/loader.json

Each configuration: one warm-up pass (worker start-up, page cache), then `repeats` timed passes over `samples`
samples in batches of 4; the median pass time gives samples/s. `num_workers=0` loads in this process (one
worker); with N workers the per-worker figure is samples/s / N. OpenCV runs one thread per worker (`seed_worker`),
so on a machine with C free cores the loader scales to about C workers. On a shared machine the wall-clock
rates depend on the other load; the in-process samples per CPU-second do not.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataset import GenericDatasetWithIntrinsics, seed_worker  # noqa: E402
from dataset.synthetic import Scene, random_intrinsics  # noqa: E402

IMAGE_SIZE = (640, 480)  # (width, height)
DEPTH_SCALE = 1 / 1000  # millimetre pngs, like NYU / TUM


def write_benchmark_data(folder: str | Path, n_images: int = 12, seed: int = 0) -> Path:
    """Write `n_images` 640x480 jpg (quality 95, with sensor-like noise) + 16-bit png depth (mm) + K; returns the list.

    Content is a rendered synthetic room, so JPEG sizes and decode times are those of natural-looking photos.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = IMAGE_SIZE
    lines = []
    for i in range(n_images):
        K = random_intrinsics(rng, width, height, (50.0, 70.0))
        rgb, depth = Scene.random(rng).render(K, width, height)
        noisy = np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i}.jpg"), cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        depth_mm = np.round(np.clip(depth, 0, 65.535) / DEPTH_SCALE).astype(np.uint16)
        depth_mm[rng.random(depth_mm.shape) < 0.05] = 0  # missing returns, as in real sensors
        cv2.imwrite(str(folder / f"{i}_depth.png"), depth_mm)
        np.save(folder / f"{i}_K.npy", K)
        lines.append(f"{i}.jpg {i}_depth.png {i}_K.npy")
    filelist = folder / "train.txt"
    filelist.write_text("\n".join(lines) + "\n")
    return filelist


def measure_loader(
    size: int = 518,
    num_workers: int = 0,
    samples: int = 64,
    repeats: int = 5,
    batch_size: int = 4,
    filelist: str | Path | None = None,
) -> dict:
    """Training-mode loading speed of `GenericDatasetWithIntrinsics` (zoom, crop, flip, jitter on).

    Args:
        size: square crop side in pixels (multiple of 14).
        num_workers: DataLoader workers (0 = load in this process).
        samples: samples per timed pass.
        repeats: timed passes; the median is reported.
        batch_size: DataLoader batch size (default collate included in the time).
        filelist: an existing file list to load; default writes the 640x480 benchmark data to a temp dir.

    Returns:
        {'size', 'workers', 'samples', 'repeats', 'samples_per_s', 'samples_per_s_per_worker', 'pass_seconds',
        'samples_per_cpu_s' (num_workers=0 only, else None)}.
    """
    with tempfile.TemporaryDirectory() as tmp:
        filelist = filelist or write_benchmark_data(tmp)
        dataset = GenericDatasetWithIntrinsics(filelist, mode="train", size=(size, size), depth_scale=DEPTH_SCALE)
        order = [i % len(dataset) for i in range(samples)]
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=order,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            worker_init_fn=seed_worker,
        )
        torch_threads = torch.get_num_threads()
        if num_workers == 0:  # this process is the only worker: one thread, like a DataLoader worker
            torch.set_num_threads(1)  # (OpenCV already runs one thread once a dataset exists)
        try:
            times, cpu_times = [], []
            for i in range(repeats + 1):
                start, cpu_start = time.perf_counter(), time.process_time()
                for _ in loader:
                    pass
                if i:  # pass 0 is the warm-up
                    times.append(time.perf_counter() - start)
                    cpu_times.append(time.process_time() - cpu_start)
        finally:
            torch.set_num_threads(torch_threads)
    rate = samples / statistics.median(times)
    return {
        "size": size,
        "workers": num_workers,
        "samples": samples,
        "repeats": repeats,
        "samples_per_s": rate,
        "samples_per_s_per_worker": rate / max(num_workers, 1),
        "pass_seconds": times,
        # In-process loading only: samples per CPU-second, the speed of one worker with a core to itself
        # (robust to other processes on a shared machine).
        "samples_per_cpu_s": samples / statistics.median(cpu_times) if num_workers == 0 else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "loader_results.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    results = [measure_loader(args.size, w, args.samples, args.repeats) for w in args.workers]
    print(f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} jpg + 16-bit png depth -> {args.size} crop, train mode")
    print("| workers | samples/s | per worker | per CPU-second |")
    print("|---|---|---|---|")
    for r in results:
        cpu = f"{r['samples_per_cpu_s']:.1f}" if r["samples_per_cpu_s"] else "-"
        print(f"| {r['workers']} | {r['samples_per_s']:.1f} | {r['samples_per_s_per_worker']:.1f} | {cpu} |")
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/bench_loader.py", *(argv if argv is not None else sys.argv[1:])]),
        "input": f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} jpg q95 + 16-bit png depth + K .npy, train mode",
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "torch": torch.__version__,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
    }
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
