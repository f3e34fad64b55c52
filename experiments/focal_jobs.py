"""Training side of the single-camera experiment: the budgets, the train.py runs of each seed, and a scheduler that
runs several of them at once (each with its own torch threads), in dependency order (A before B, C, D)."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path
from subprocess import STDOUT, Popen

MAX_DEPTH = 20.0  # metres, the metric head's range (the rooms are 3-10 m deep)
ZOOM_RANGE = ("0.4", "2.5")  # covers the test focal ratios 0.40-2.60
SLOPE_ZOOM = 2.0  # centre zoom factor of the zoom slope: a test image of ratio r is compared with its view of ratio 2r
RECIPE_A = ["--no-freeze-dinov2", "--lr", "0.0001", "--clip-grad", "1.0"]  # the working from-scratch pilot
RECIPE_CAMERA = ["--use-camera-intrinsics", "--lr", "0.00005", "--clip-grad", "1.0"]  # from A's weights
CAMERA_MODELS = {
    "B": ["--no-zoom"],
    "C": ["--zoom-range", *ZOOM_RANGE, "--use-distillation", "--cache-teacher"],
    "D": ["--zoom-range", *ZOOM_RANGE],
}


@dataclasses.dataclass(frozen=True)
class Scale:
    """One budget. Sizes in pixels, counts in scenes, epochs over the training scenes (n_train // bs steps each);
    `jobs` train.py runs at once with `threads` torch threads each."""

    width: int
    height: int
    crop: int  # training crop and evaluation short side, multiple of 14
    n_train: int
    n_val: int  # validation scenes through the training camera (A's training curve)
    per_bin: int  # test scenes per focal-ratio bin
    n_bins: int
    bs: int
    epochs_a: int
    epochs_cam: int
    warmup_a: int  # steps
    warmup_cam: int  # steps
    seeds: tuple[int, ...]
    models: tuple[str, ...]
    backbones: tuple[str, ...]
    device: str
    workers: int  # data loader processes per train.py
    jobs: int
    threads: int
    curve_points: int  # evaluations of A during training
    teacher_check: bool = True  # C's teacher (A) judged before training; the smoke run's A is barely trained


SCALES = {
    # The smallest end-to-end run (tests/test_experiment.py): every model, bin and output; numbers meaningless.
    "smoke": Scale(width=56, height=42, crop=42, n_train=16, n_val=4, per_bin=2, n_bins=7, bs=4, epochs_a=2,
                   epochs_cam=1, warmup_a=2, warmup_cam=1, seeds=(0,), models=("A", "B", "C", "D"),
                   backbones=("trained",), device="cpu", workers=0, jobs=2, threads=1, curve_points=2,
                   teacher_check=False),
    # The default, 2 CPU cores: A 1200 steps (the working pilot), B and C 800 steps each, three seeds.
    "cpu": Scale(width=112, height=84, crop=70, n_train=320, n_val=16, per_bin=16, n_bins=7, bs=8, epochs_a=30,
                 epochs_cam=20, warmup_a=100, warmup_cam=50, seeds=(0, 1, 2), models=("A", "B", "C"),
                 backbones=("trained",), device="cpu", workers=0, jobs=2, threads=1, curve_points=6),
    # A CUDA device: 168 px crops, 5x the scenes, every model with the backbone trained and frozen (not run yet).
    "gpu": Scale(width=224, height=168, crop=168, n_train=1600, n_val=32, per_bin=48, n_bins=7, bs=16, epochs_a=40,
                 epochs_cam=30, warmup_a=200, warmup_cam=100, seeds=(0, 1, 2), models=("A", "B", "C", "D"),
                 backbones=("trained", "frozen"), device="cuda", workers=4, jobs=2, threads=4, curve_points=8),
}  # fmt: skip


def model_key(model: str, backbone: str) -> str:
    """'B' for B with the backbone trained, 'B_frozen' with it frozen; A is always trained from scratch."""
    return model if backbone == "trained" or model == "A" else f"{model}_{backbone}"


@dataclasses.dataclass
class Job:
    """One train.py run: `args` without --save-path; it starts once the job `after` of its seed has finished."""

    seed: int
    key: str
    args: list[str]
    save: Path
    steps: int
    after: str | None = None

    @property
    def command(self) -> list[str]:
        return [sys.executable, "train.py", *self.args, "--save-path", str(self.save)]

    @property
    def checkpoint(self) -> Path:
        return self.save / "latest.pth"

    @property
    def marker(self) -> Path:
        return self.save / "experiment_done.json"

    @property
    def started(self) -> Path:
        """Beside the run folder (train.py --overwrite clears the folder): the command of the run last started there."""
        return self.save.parent / f"{self.key}.started.json"

    def resumable(self) -> bool:
        """An unfinished run of the same command is in `save`: the experiment continues it from its latest.pth."""
        if not (self.checkpoint.is_file() and self.started.is_file()):
            return False
        return json.loads(self.started.read_text()).get("command") == self.command[1:]

    def finished(self) -> bool:
        """A finished run of the same command is in `save` (a rerun of the experiment reuses it)."""
        if not self.marker.is_file():
            return False
        marker = json.loads(self.marker.read_text())
        return marker.get("command") == self.command[1:] and "timing" in marker


def common_flags(seed: int, crop: int, bs: int, workers: int, device: str, per_epoch: int, dataset: Path) -> list[str]:
    """The train.py flags every run of an experiment shares (vits, bf16, two log lines per epoch): the
    experiments' protocol, in one place."""
    return ["--encoder", "vits", "--img-size", str(crop), "--max-depth", str(MAX_DEPTH), "--bs", str(bs),
            "--workers", str(workers), "--precision", "bf16", "--device", device, "--seed", str(seed),
            "--log-interval", str(max(1, per_epoch // 2)), "--dataset", str(dataset)]  # fmt: skip


def plan_seed(seed: int, scale: Scale, models: list[str], backbones: list[str], data: Path, work: Path) -> list[Job]:
    """The runs of one seed: A from scratch, then B, C, D (as asked) from A's weights for each backbone recipe."""
    per_epoch = scale.n_train // scale.bs
    common = common_flags(seed, scale.crop, scale.bs, scale.workers, scale.device, per_epoch, data)
    a_args = [*common, *RECIPE_A, "--warmup-iters", str(scale.warmup_a), "--epochs", str(scale.epochs_a),
              "--eval-interval", str(max(1, scale.epochs_a // scale.curve_points))]  # fmt: skip
    jobs = [Job(seed, "A", a_args, work / "A", scale.epochs_a * per_epoch)]
    camera = [*common, *RECIPE_CAMERA, "--warmup-iters", str(scale.warmup_cam), "--epochs", str(scale.epochs_cam),
              "--eval-interval", str(scale.epochs_cam), "--pretrained-from", str(jobs[0].checkpoint)]  # fmt: skip
    for backbone in backbones:
        freeze = "--no-freeze-dinov2" if backbone == "trained" else "--freeze-dinov2"
        for model in (m for m in models if m != "A"):
            teacher = []
            if model == "C":
                teacher = ["--teacher-checkpoint", str(jobs[0].checkpoint)]
                teacher += [] if scale.teacher_check else ["--no-teacher-check"]
            key = model_key(model, backbone)
            args = [*camera, freeze, *CAMERA_MODELS[model], *teacher]
            jobs.append(Job(seed, key, args, work / key, scale.epochs_cam * per_epoch, after="A"))
    return jobs


def run_jobs(jobs: list[Job], parallel: int, threads: int, cwd: Path) -> list[dict]:
    """Run the jobs, `parallel` at once, each in order of the list once its `after` job is done; a finished run
    of the same command is reused, an unfinished one (a killed experiment) resumed from its latest.pth. Stops the
    others and exits when one fails.

    Returns:
        one timing row per job: seed, model, wall_s, cpu_s (user + system time of the process), steps, start_s
        (offset from the start of the call that ran it), resumed (its times cover only the part after the resume);
        a reused run's row is the one of its run, with reused.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pending, running, done, timing, start = list(jobs), {}, set(), [], time.time()
    while pending or running:
        for job in [j for j in pending if j.after is None or (j.seed, j.after) in done]:
            if job.finished():
                print(f"[seed {job.seed}] {job.key}: reusing the finished run in {job.save}", flush=True)
                pending.remove(job)
                done.add((job.seed, job.key))
                timing.append({**json.loads(job.marker.read_text())["timing"], "reused": True})
            elif len(running) < parallel:
                resuming = job.resumable()
                start_flags = ["--resume", "auto"] if resuming else ["--overwrite"]
                print("$ " + " ".join(shlex.quote(c) for c in [*job.command, *start_flags]), flush=True)
                job.save.parent.mkdir(parents=True, exist_ok=True)
                job.started.write_text(json.dumps({"command": job.command[1:]}))
                log = open(job.save.parent / f"{job.key}.log", "a" if resuming else "w")
                process = Popen([*job.command, *start_flags], cwd=cwd, stdout=log, stderr=STDOUT, env=env)
                running[process.pid] = (job, process, log, time.time(), resuming)
                pending.remove(job)
        pid, status, usage = os.wait4(-1, 0) if running else (0, 0, None)
        if pid not in running:
            continue
        job, process, log, began, resumed = running.pop(pid)
        log.close()
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            for _, other, *_ in running.values():
                other.terminate()
            raise SystemExit(
                f"[seed {job.seed}] {job.key}: train.py failed (exit {process.returncode}), see {log.name}"
            )
        done.add((job.seed, job.key))
        timing.append({"seed": job.seed, "model": job.key, "steps": job.steps, "wall_s": time.time() - began,
                       "cpu_s": usage.ru_utime + usage.ru_stime, "start_s": began - start,
                       "resumed": resumed})  # fmt: skip
        job.marker.write_text(json.dumps({"command": job.command[1:], "timing": timing[-1]}))
        print(f"[seed {job.seed}] {job.key} done in {(time.time() - began) / 60:.1f} minutes", flush=True)
    return timing
