"""The headless front end: plain log lines for nohup, CI, pipes and `--headless`.

The words are the run model's (:mod:`tuigpt.run.wording`, the same the monitor's events log shows); this printer
decides only what goes out: every line that is not the events log's alone, eval progress at a readable pace, and
alerts as marked lines.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TextIO

from tuigpt.run.alerts import alert_for, terminal_bytes
from tuigpt.run.events import EvalProgress, Event
from tuigpt.run.model import RunModel
from tuigpt.run.wording import LOG

ALERT_MARK = "!!! ALERT"  # headless alert lines start with this: grep for it, or point a log watcher at it
EVAL_QUIET = 2.0  # an eval shorter than this prints only its result
EVAL_EVERY = 10.0  # a long eval prints its progress this often


class HeadlessPrinter:
    """Prints one line per log_interval iterations, each eval, checkpoint, notice, and a closing summary; alerts
    (when the run's config has ``alerts``) as a marked line, with the bell and a desktop notification when
    the output is a terminal."""

    def __init__(self, out: TextIO | None = None, model: RunModel | None = None) -> None:
        self.out = out or sys.stdout
        self.model = model or RunModel()
        self._lock = threading.Lock()
        self._eval_printed: tuple[int, float] | None = None  # (iteration, seconds) of the last progress line

    def _print(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def __call__(self, event: Event) -> None:
        lines = [line.text for line in self.model.record(event) if line.shown != LOG]
        if lines and (not isinstance(event, EvalProgress) or self._progress_due(event)):
            self._print("\n".join(lines))  # one write: a sample's text stays in one piece
        run = self.model.run
        if run is not None and run.config.get("alerts", True) and (alert := alert_for(event, run.run_name)):
            ring = terminal_bytes(alert, os.environ) if self.out.isatty() else ""
            self._print(f"{ring}{ALERT_MARK} [{alert.kind}] {alert.summary}")

    def _progress_due(self, e: EvalProgress) -> bool:
        """The run's first eval says what it does at once (it can take tens of seconds); a later one once it has
        taken EVAL_QUIET seconds; then every EVAL_EVERY seconds."""
        last = self._eval_printed if self._eval_printed is not None and self._eval_printed[0] == e.iter else None
        if last is None and e.seconds < EVAL_QUIET and self.model.evals_seen:
            return False
        if last is not None and e.seconds - last[1] < EVAL_EVERY:
            return False
        self._eval_printed = (e.iter, e.seconds)
        return True
