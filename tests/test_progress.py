"""Progress of long passes in a log (stderr not a terminal): periodic lines with the rate, and the total when known."""

from __future__ import annotations

import logging

from dataset import progress as progress_module


def test_progress_lines_with_and_without_a_known_total(caplog, monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.0)  # a line after every item
    logger = logging.getLogger("progress-test")
    with caplog.at_level(logging.INFO, logger="progress-test"):
        assert list(progress_module.progress(range(3), 3, "known", "frame", logger)) == [0, 1, 2]
        assert list(progress_module.progress(iter(range(3)), None, "unknown", "frame", logger)) == [0, 1, 2]
    known = [r.getMessage() for r in caplog.records if r.getMessage().startswith("known")]
    unknown = [r.getMessage() for r in caplog.records if r.getMessage().startswith("unknown")]
    assert known[0].startswith("known: 1/3 frames (") and "s left" in known[0] and known[-1].startswith("known: 3/3")
    assert unknown[0].startswith("unknown: 1 frames (") and "left" not in unknown[0]
    assert unknown[-1].startswith("unknown: 3 frames done in")
