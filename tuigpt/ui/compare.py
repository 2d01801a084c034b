"""A compared run (``--compare RUN_DIR``): its loss curves overlaid on the chart, re-read while it grows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuigpt.run.events import HistoryLoaded, RunStarted
from tuigpt.run.metrics_log import history_events, load_history, session_starts
from tuigpt.run.model import RunModel
from tuigpt.run.records import event_from_record
from tuigpt.run.rundir import RunDir
from tuigpt.run.series import EvalPoint, LossPoint


@dataclass(frozen=True)
class CompareCurve:
    """Another run's smoothed train loss and val losses, overlaid on the loss chart."""

    name: str
    points: list[LossPoint]
    evals: list[EvalPoint]
    tokenizer: str | None = None  # its tokenizer and bytes per token (None: recorded before bits per byte)
    bytes_per_token: float | None = None

    @property
    def t0(self) -> float | None:
        return self.points[0][4] if self.points else None


def load_compare(run_dir: Path, max_points: int = 4000) -> CompareCurve:
    """A run directory's loss curves, read once from its metrics.jsonl (thinned like a watcher's history)."""
    path = Path(run_dir)
    records = load_history(RunDir(path).metrics)
    model = RunModel(recent=max_points // 2, max_coarse=max_points // 2)
    model.record(HistoryLoaded(events=history_events(records), sessions=session_starts(records)), words=False)
    loss = model.snapshot().loss
    starts = [e for r in records if r.get("type") == "start" and isinstance(e := event_from_record(r), RunStarted)]
    start = starts[-1] if starts else None
    return CompareCurve(name=path.name, points=loss.whole, evals=loss.evals,
                        tokenizer=start.tokenizer if start is not None else None,
                        bytes_per_token=start.bytes_per_token if start is not None else None)


class CompareSource:
    """Where a compared run comes from: a run directory (read in a worker, again when its file changed), or a
    ready CompareCurve (tests, screenshots)."""

    def __init__(self, source: object) -> None:
        self.path = None if isinstance(source, CompareCurve) else Path(source)  # type: ignore[arg-type]
        self.curve: CompareCurve | None = source if isinstance(source, CompareCurve) else None
        self._stamp: tuple[int, int] | None = None  # size and mtime of its metrics.jsonl when last read

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = RunDir(self.path).metrics.stat()  # type: ignore[arg-type]
        except (OSError, TypeError):
            return None
        return st.st_size, st.st_mtime_ns

    @property
    def grown(self) -> bool:
        """Its file changed since it was read (a run that is still training)."""
        return self.path is not None and self._stamp is not None and self._file_stamp() != self._stamp

    def load(self) -> CompareCurve:
        """Read it now (a big file takes a second: call from a worker thread)."""
        stamp = self._file_stamp()
        self.curve = load_compare(self.path)  # type: ignore[arg-type]
        self._stamp = stamp
        return self.curve
