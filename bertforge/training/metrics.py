"""The run's record: ``metrics.jsonl`` (one JSON line per log step and per evaluation, written by rank 0 only) and the
``curves.png`` drawn from it, kept consistent across resumes."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from bertforge.training.plot import plot_metrics, read_metrics
from bertforge.utils import atomic_write_text, logger

PLOT_INTERVAL = 30.0
"""Seconds between redraws of curves.png at checkpoints (always redrawn at the last one): matplotlib costs ~0.2 s."""


class MetricsLogger:
    """Appends records to ``run_dir/metrics.jsonl`` on the main rank and redraws ``curves.png`` from it."""

    def __init__(self, run_dir: str | None, is_main: bool, log_interval: int):
        self.path = os.path.join(run_dir, "metrics.jsonl") if run_dir else None
        self.active = bool(self.path) and is_main
        self.log_interval = log_interval
        self.last_plot = time.monotonic()

    def should_log(self, step: int, stop_at: int) -> bool:
        return step % self.log_interval == 0 or step == stop_at

    def start(self, start_step: int) -> None:
        """Prepare the record for a run starting at ``start_step``: a fresh run (0) moves an earlier run's record
        aside (metrics.<time>.jsonl; nothing another run wrote is deleted); a resumed run keeps the records up to its
        step, so that steps redone after a crash are logged once, and drops a line torn by a kill."""
        if not self.active or not os.path.exists(self.path):  # type: ignore[arg-type]
            return
        path: str = self.path  # type: ignore[assignment]
        if start_step == 0:
            aside = path.removesuffix(".jsonl") + time.strftime(".%Y%m%d-%H%M%S.jsonl")
            os.replace(path, aside)
            logger.info("an earlier run's %s was moved to %s", os.path.basename(path), aside)
            return
        kept = [r for r in read_metrics(path) if r.get("step", 0) <= start_step]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.active:
            with open(self.path, "a", encoding="utf-8") as fh:  # type: ignore[arg-type]
                fh.write(json.dumps(record) + "\n")

    def should_plot(self, final: bool) -> bool:
        return final or time.monotonic() - self.last_plot >= PLOT_INTERVAL

    def plot(self) -> None:
        """Redraw curves.png beside the record (main rank); a plot is never worth stopping a run for."""
        self.last_plot = time.monotonic()
        if not self.active or not os.path.exists(self.path):  # type: ignore[arg-type]
            return
        target = os.path.join(os.path.dirname(self.path), "curves.png")  # type: ignore[arg-type, type-var]
        try:
            plot_metrics(self.path, target)  # type: ignore[arg-type]
        except Exception as e:
            logger.warning("could not redraw %s: %s", target, e)
