"""A run's metrics.jsonl as tables anyone can read (pandas, a spreadsheet, DuckDB) without knowing tuigpt's records.

``scalars``: one row per iteration where something was recorded (``iter``, ``time``, then one column per series:
``train/loss``, ``eval/val_loss``, ``health/grad_norm``, ``cpu/percent``, …, the names the dashboards get, from
:mod:`tuigpt.run.dashboard_rows`); what an iteration did not record is empty. An iteration trained twice (a
rewind, a resume after a crash) is a row each time, in file order, as metrics.jsonl has it.
``text``: one row per sample or event line (``iter``, ``time``, ``series``, ``text``).

The file is read twice, streaming: once for the columns, once for the rows, so a million-line history never sits
in memory whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tuigpt.run.dashboard_rows import RowMaker
from tuigpt.run.events import Event
from tuigpt.run.records import event_from_record, loads

TABLES = ("scalars", "text")
STEP, TIME = "iter", "time"
TEXT_COLUMNS = (STEP, TIME, "series", "text")


@dataclass
class _Pending:
    step: int
    time: float
    values: dict[str, float] = field(default_factory=dict)


def _events(path: Path) -> Iterator[Event]:
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # torn last line
            record = loads(raw)
            if record is not None and (event := event_from_record(record)) is not None:
                yield event


def scalar_columns(path: Path) -> list[str]:
    """``iter``, ``time`` and every series the file records, in order of first appearance."""
    seen: dict[str, None] = {}
    rows = RowMaker()
    for event in _events(path):
        if (row := rows(event)) is not None:
            seen.update(dict.fromkeys(row.scalars))
    return [STEP, TIME, *seen]


def scalar_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The scalars table, a row at a time: the values recorded at one iteration, until the iteration changes."""
    rows = RowMaker()
    pending: _Pending | None = None
    for event in _events(path):
        row = rows(event)
        if row is None or not row.scalars:
            continue
        if pending is not None and row.step != pending.step:
            yield {STEP: pending.step, TIME: pending.time, **pending.values}
            pending = None
        if pending is None:
            pending = _Pending(row.step, event.time)
        pending.time = event.time
        pending.values.update(row.scalars)
    if pending is not None:
        yield {STEP: pending.step, TIME: pending.time, **pending.values}


def text_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The text table: each sample and event line with its iteration and time."""
    rows = RowMaker()
    for event in _events(path):
        row = rows(event)
        if row is not None:
            for series, text in row.texts.items():
                yield {STEP: row.step, TIME: event.time, "series": series, "text": text}
