"""TensorBoard: event files in the run folder's ``tensorboard/``, written with the tensorboard package's own
writer (no TensorFlow, no torch): ``tensorboard --logdir checkpoints`` shows every run by its folder's name.

A ``--resume`` writes into the same directory and starts its file with a session start at the first iteration
it trains: TensorBoard then drops what an earlier session logged past the checkpoint it resumed from, as
metrics.jsonl cuts it, so the chart shows each iteration once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tuigpt.host.dashboards.sink import Opened
from tuigpt.run.dashboard_rows import Row
from tuigpt.run.events import RunStarted

FOLDER = "tensorboard"
FLUSH_SECONDS = 10  # how stale a live TensorBoard may be; the writer's default is 120 s


class TensorBoardEvents:
    """A run's TensorBoard event files."""

    def __init__(self) -> None:
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.text.summary_v2 import text_pb
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._Event, self._SessionLog, self._Summary, self._text_pb = Event, SessionLog, Summary, text_pb
        self._writer_class = EventFileWriter
        self._writer: Any = None

    def open(self, start: RunStarted) -> Opened:
        logdir = Path(start.run_dir) / FOLDER
        continued = start.resumed and any(logdir.glob("events.out.tfevents.*"))
        self._writer = self._writer_class(str(logdir), flush_secs=FLUSH_SECONDS)
        if continued:  # TensorBoard keeps, of earlier files, the steps before this one
            self._add(step=start.start_iter + 1,
                      session_log=self._SessionLog(status=self._SessionLog.START))
        config = "\n".join(f"    {key}: {value!r}" for key, value in sorted(start.config.items()))
        self._add(step=start.start_iter, summary=self._text_pb("config", config))
        return Opened(f"log_to tensorboard: {logdir} (view: tensorboard --logdir {Path(start.run_dir).parent})",
                      continued)

    def write(self, row: Row) -> None:
        if row.scalars:
            values = [self._Summary.Value(tag=name, simple_value=value) for name, value in row.scalars.items()]
            self._add(step=row.step, summary=self._Summary(value=values))
        for name, text in row.texts.items():
            # TensorBoard's text plugin reads markdown: four spaces keep a sample's lines and spacing as written
            self._add(step=row.step, summary=self._text_pb(name, "\n".join("    " + line for line in text.split("\n"))))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def _add(self, step: int, **fields: Any) -> None:
        self._writer.add_event(self._Event(wall_time=time.time(), step=step, **fields))
