"""Progress of long start-up passes: a tqdm bar on a terminal, periodic log lines otherwise (log files, CI)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
LOG_EVERY_S = 10.0


def progress(
    items: Iterable[T], total: int | None, desc: str, unit: str = "file", logger: logging.Logger | None = None
) -> Iterator[T]:
    """Yield `items`, showing how far the pass is with its rate and an estimate of the time left (None `total`:
    unknown, the count and rate only).

    On a terminal (stderr is a TTY): a tqdm bar. Otherwise: an INFO line on `logger` every LOG_EVERY_S seconds
    and one at the end. Nothing is shown where `logger` does not log INFO (e.g. ranks other than 0 in training).
    """
    logger = logger or logging.getLogger(__name__)
    if not logger.isEnabledFor(logging.INFO):
        yield from items
        return
    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True)
        return
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= LOG_EVERY_S and (total is None or done < total):
            last = now
            rate = done / (now - start)
            left = "" if total is None else f", about {(total - done) / rate:.0f} s left"
            logger.info("%s: %d%s %ss (%.1f/s%s)", desc, done, "" if total is None else f"/{total}", unit, rate, left)
    if time.monotonic() - start >= LOG_EVERY_S:
        of = "" if total is None else f"/{total}"
        logger.info("%s: %d%s %ss done in %.0f s", desc, done, of, unit, time.monotonic() - start)
