"""Quick start on built-in demo data: synthetic scenes -> a teacher -> a camera-aware distilled student ->
depth maps of the validation images. Every step is an ordinary command of this repo, printed before it runs.

    python demo.py                 # a few minutes on 2 CPU cores; results in demo_output/
    python demo.py --size tiny     # the smallest run (about a minute), used by the tests
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

SIZES = {
    # scenes (train, val), image size, training crop, teacher epochs, student epochs, batch
    "tiny": {
        "n_train": 8,
        "n_val": 2,
        "width": 112,
        "height": 84,
        "crop": 70,
        "teacher_epochs": 1,
        "student_epochs": 1,
        "bs": 4,
    },
    "default": {
        "n_train": 160,
        "n_val": 16,
        "width": 160,
        "height": 120,
        "crop": 98,
        "teacher_epochs": 4,
        "student_epochs": 3,
        "bs": 8,
    },
}


REPO = Path(__file__).resolve().parent


def run(command: list[str]) -> None:
    print("\n$ " + " ".join(shlex.quote(c) for c in command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def main(args: argparse.Namespace) -> None:
    cfg = SIZES[args.size]
    py = sys.executable
    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    scenes = data / f"scenes_{args.size}"
    if not (scenes / "splits" / "train.txt").exists():
        run([py, "-m", "dataset.synthetic", "--out", str(scenes), "--n-train", str(cfg["n_train"]),
             "--n-val", str(cfg["n_val"]), "--width", str(cfg["width"]), "--height", str(cfg["height"])])  # fmt: skip
    common = ["--encoder", "vits", "--dataset", str(scenes), "--img-size", str(cfg["crop"]), "--max-depth", "20",
              "--bs", str(cfg["bs"]), "--workers", "1", "--precision", args.precision, "--device", args.device,
              "--log-interval", "5"]  # fmt: skip
    teacher = out / "teacher"
    run([py, "train.py", *common, "--epochs", str(cfg["teacher_epochs"]), "--lr", "2e-4", "--no-freeze-dinov2",
         "--save-path", str(teacher)])  # fmt: skip
    student = out / "student"
    run([py, "train.py", *common, "--epochs", str(cfg["student_epochs"]), "--lr", "1e-4", "--no-freeze-dinov2",
         "--pretrained-from", str(teacher / "latest.pth"), "--use-camera-intrinsics", "--use-distillation",
         "--teacher-checkpoint", str(teacher / "latest.pth"), "--save-path", str(student)])  # fmt: skip
    images = out / "val_images.txt"
    lines = (scenes / "splits" / "val.txt").read_text().split("\n")
    images.write_text("\n".join(str((scenes / line.split()[0]).resolve()) for line in lines if line.strip()) + "\n")
    run([py, "run.py", "--load-from", str(student / "latest.pth"), "--img-path", str(images), "--outdir",
         str(out / "depth"), "--input-size", str(cfg["crop"]), "--intrinsics", str(scenes / "intrinsics"),
         "--save-numpy", "--device", args.device])  # fmt: skip
    print(f"\nDone: checkpoints in {teacher} and {student}, depth maps in {out / 'depth'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="default", choices=sorted(SIZES))
    parser.add_argument("--data", default="demo_data", help="where the synthetic scenes are generated")
    parser.add_argument("--out", default="demo_output", help="checkpoints and depth maps")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="auto")
    main(parser.parse_args())
