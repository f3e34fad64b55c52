"""Logging for training: a rank-0 text log, TensorBoard for humans and metrics.jsonl for machines."""

from __future__ import annotations

import json
import logging
import logging.handlers
import math
import sys
from pathlib import Path

import numpy as np


def setup_logging(is_main: bool) -> None:
    """Log INFO to stdout on rank 0 (train.log joins with `attach_run_log`); other ranks log warnings and errors
    only."""
    logging.basicConfig(
        level=logging.INFO if is_main else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
        force=True,
    )


def hold_run_log() -> None:
    """Keep this process's log records in memory until `attach_run_log`: a run refused by a later check writes
    no train.log into its folder."""
    logging.getLogger().addHandler(logging.handlers.MemoryHandler(capacity=1 << 30, target=None))


def attach_run_log(save_path: str | Path) -> None:
    """Start `<save_path>/train.log` with the records held since `hold_run_log`, then log into it."""
    root = logging.getLogger()
    handler = logging.FileHandler(Path(save_path) / "train.log")
    handler.setFormatter(root.handlers[0].formatter)
    for held in [h for h in root.handlers if isinstance(h, logging.handlers.MemoryHandler)]:
        held.setTarget(handler)
        held.flush()
        root.removeHandler(held)
    root.addHandler(handler)


def log_to_file(message: str) -> None:
    """An error record in train.log only (when the run's log is open), e.g. the message a SystemExit prints."""
    record = logging.getLogger("train").makeRecord("train", logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def finite_or_null(values: dict[str, float]) -> dict[str, float | None]:
    """The values with NaN and inf as None, so that json.dumps writes valid JSON (null, not a bare NaN)."""
    return {k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in values.items()}


def read_metrics(metrics_jsonl: str | Path) -> list[dict]:
    """The events a `MetricsWriter` wrote, in order, with null read back as NaN; a line cut by a killed run is
    skipped."""
    events = []
    for line in Path(metrics_jsonl).read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        events.append({k: math.nan if v is None else v for k, v in event.items()})
    return events


class MetricsWriter:
    """Writes the same scalars to TensorBoard (`tag` = e.g. 'train/loss') and to `metrics.jsonl`.

    Created on rank 0 only; TensorBoard is imported lazily so a machine without it still trains (jsonl only).
    """

    def __init__(self, save_path: str | Path) -> None:
        self.jsonl = open(Path(save_path) / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logging.getLogger(__name__).warning("tensorboard is not installed: writing metrics.jsonl only")
            self.tensorboard = None
        else:
            self.tensorboard = SummaryWriter(str(save_path))

    def write(self, step: int, scalars: dict[str, float], **extra: object) -> None:
        """One event: every scalar at global step `step`; `extra` (e.g. epoch) goes to the jsonl line only."""
        if self.tensorboard is not None:
            for tag, value in scalars.items():
                self.tensorboard.add_scalar(tag, value, step)
        self.jsonl.write(json.dumps(finite_or_null({"step": step, **extra, **scalars}), allow_nan=False) + "\n")
        self.jsonl.flush()

    def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """(H, W, 3) uint8 RGB images to TensorBoard at global step `step` (not to the jsonl)."""
        if self.tensorboard is not None:
            for tag, image in images.items():
                self.tensorboard.add_image(tag, image, step, dataformats="HWC")
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.jsonl.close()


class AverageMeter:
    """Running mean of a scalar since the last reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, value: float, n: int = 1) -> None:
        self.total += value * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.total / max(self.count, 1)
