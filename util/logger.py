"""Logging for training: a rank-0 text log, TensorBoard for humans and metrics.jsonl for machines."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path


def setup_logging(save_path: str | Path | None, is_main: bool) -> None:
    """Log INFO to stdout and `<save_path>/train.log` on rank 0; other ranks log warnings and errors only."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if is_main and save_path is not None:
        handlers.append(logging.FileHandler(Path(save_path) / "train.log"))
    logging.basicConfig(
        level=logging.INFO if is_main else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        handlers=handlers,
        force=True,
    )


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
        self.jsonl.write(json.dumps({"step": step, **extra, **scalars}) + "\n")
        self.jsonl.flush()

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
