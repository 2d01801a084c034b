"""Bounded, thread-safe history of a run, filled by the subscriber and read by drawing.

The subscriber callback runs on the trainer thread and appends every event here
(cheap: a few list operations under a lock), so the loss curve keeps every
iteration even when the UI drops superseded IterationStats messages. Drawing
takes a :meth:`RunHistory.snapshot` (plain copies) on a timer.

Memory stays bounded however long the run: :class:`DownsampledSeries` keeps the
last ``recent`` points at full resolution plus a whole-run view that halves its
resolution (merges pairs) whenever it reaches ``max_coarse`` points.

The derived numbers (EMA of the loss, ETA) are small pure functions here, with
their formulas, so every pane computes them the same way.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tuigpt.events import CheckpointWritten, EvalResult, Event, HistoryLoaded, IterationStats, RunStarted

# (iteration, raw loss, smoothed loss, tokens seen, wall-clock time) — the last two None when unknown
# (old metrics files); they let the chart put tokens or time on the x axis
LossPoint = tuple[int, float, float, "int | None", "float | None"]
# (iteration, train loss, val loss)
EvalPoint = tuple[int, float, float]

WARMUP_ITERS = 5  # the first iterations of a session compile/warm caches: left out of averages
EMA_BETA = 0.95


def ema_step(prev: float, value: float, beta: float = EMA_BETA) -> float:
    """One step of an exponential moving average: beta * prev + (1 - beta) * value."""
    return beta * prev + (1.0 - beta) * value


def ema_debiased(ema: float, steps: int, beta: float = EMA_BETA) -> float:
    """Bias-corrected EMA (as in Adam / nanochat): an EMA started at 0 divided by 1 - beta**steps."""
    return ema / (1.0 - beta**steps) if steps > 0 else ema


def remaining_evals(iteration: int, max_iters: int, eval_interval: int, next_eval_iter: int | None = None) -> int:
    """Evals still to come: one at every multiple of eval_interval in (iteration, max_iters]."""
    if eval_interval < 1 or iteration >= max_iters:
        return 0
    first = next_eval_iter if next_eval_iter is not None and next_eval_iter > iteration else (iteration // eval_interval + 1) * eval_interval
    if first > max_iters:
        return 0
    return (max_iters - first) // eval_interval + 1


def eta_seconds(
    iteration: int,
    max_iters: int,
    ms_per_iter: float | None,
    eval_interval: int,
    mean_eval_seconds: float | None,
    next_eval_iter: int | None = None,
) -> float | None:
    """Time left: remaining iters x recent ms/iter, plus remaining evals x mean eval time.

    None while no iteration time is known yet.
    """
    if ms_per_iter is None:
        return None
    remaining = max(0, max_iters - iteration)
    seconds = remaining * ms_per_iter / 1000.0
    if mean_eval_seconds:
        seconds += remaining_evals(iteration, max_iters, eval_interval, next_eval_iter) * mean_eval_seconds
    return seconds


class DownsampledSeries:
    """Full resolution for the last ``recent`` points plus a bounded view of the whole run.

    The whole-run view is a list of buckets of ``stride`` consecutive points, each
    drawn at its first iteration with the mean of its values. When it reaches
    ``max_coarse`` buckets, neighbouring pairs merge and the stride doubles, so
    the view never holds more than ``max_coarse`` (+2) points.
    Not thread-safe on its own: :class:`RunHistory` holds the lock.
    """

    def __init__(self, recent: int = 2000, max_coarse: int = 2000) -> None:
        if max_coarse < 2 or max_coarse % 2:
            raise ValueError("max_coarse must be an even number >= 2")
        self.max_coarse = max_coarse
        self.stride = 1
        self._recent: deque[LossPoint] = deque(maxlen=recent)
        self._coarse: list[LossPoint] = []
        # the bucket being filled: first iteration, sums of values, count
        self._b_iter = 0
        self._b_loss = 0.0
        self._b_smooth = 0.0
        self._b_n = 0
        self._b_tokens: int | None = None
        self._b_time: float | None = None

    def __len__(self) -> int:
        """Points held in memory (what the bound is about)."""
        return len(self._recent) + len(self._coarse) + (1 if self._b_n else 0)

    def append(self, iteration: int, loss: float, smooth: float, tokens: int | None = None,
               when: float | None = None) -> None:
        if self._recent and iteration <= self._recent[-1][0]:
            self._truncate(iteration)  # a resume from an older checkpoint rewinds the curve
        self._recent.append((iteration, loss, smooth, tokens, when))
        if self._b_n == 0:
            self._b_iter, self._b_tokens, self._b_time = iteration, tokens, when
        self._b_loss += loss
        self._b_smooth += smooth
        self._b_n += 1
        if self._b_n >= self.stride:
            self._coarse.append((self._b_iter, self._b_loss / self._b_n, self._b_smooth / self._b_n, self._b_tokens, self._b_time))
            self._b_loss = self._b_smooth = 0.0
            self._b_n = 0
            if len(self._coarse) >= self.max_coarse:
                c = self._coarse
                self._coarse = [(c[k][0], (c[k][1] + c[k + 1][1]) / 2, (c[k][2] + c[k + 1][2]) / 2, c[k][3], c[k][4])
                                for k in range(0, len(c), 2)]
                self.stride *= 2

    def _truncate(self, iteration: int) -> None:
        while self._recent and self._recent[-1][0] >= iteration:
            self._recent.pop()
        while self._coarse and self._coarse[-1][0] >= iteration:
            self._coarse.pop()
        if self._b_n and self._b_iter >= iteration:
            self._b_loss = self._b_smooth = 0.0
            self._b_n = 0

    def recent(self, n: int | None = None) -> list[LossPoint]:
        """The last ``n`` points (all recent ones when None), oldest first."""
        if n is None or n >= len(self._recent):
            return list(self._recent)
        return [self._recent[k] for k in range(len(self._recent) - n, len(self._recent))]

    def whole(self) -> list[LossPoint]:
        """The whole run, downsampled, ending at the last point seen."""
        view = list(self._coarse)
        if self._b_n:
            view.append((self._b_iter, self._b_loss / self._b_n, self._b_smooth / self._b_n, self._b_tokens, self._b_time))
        if self._recent and (not view or view[-1][0] != self._recent[-1][0]):
            view.append(self._recent[-1])
        return view


@dataclass(frozen=True)
class HistoryView:
    """A consistent copy of the history for drawing (no references into the live buffers)."""

    version: int
    recent: list[LossPoint]
    whole: list[LossPoint]
    evals: list[EvalPoint]
    best_eval: EvalPoint | None
    ms_recent: list[float]
    last: IterationStats | None
    tokens_per_sec_avg: float | None
    mfu_avg: float | None
    eval_seconds: float
    n_evals: int
    checkpoint_seconds: float

    @property
    def ms_per_iter_recent(self) -> float | None:
        """Median of the last 50 ms/iter: robust to one slow iteration (an eval or GC pause)."""
        return statistics.median(self.ms_recent[-50:]) if self.ms_recent else None

    @property
    def mean_eval_seconds(self) -> float | None:
        return self.eval_seconds / self.n_evals if self.n_evals else None


class RunHistory:
    """Everything the panes draw from, appended from the subscriber thread."""

    def __init__(self, recent: int = 2000, max_coarse: int = 2000, max_evals: int = 2000, speed_window: int = 120) -> None:
        self._lock = threading.Lock()
        self.loss = DownsampledSeries(recent, max_coarse)
        self._max_evals = max_evals
        self._evals: list[EvalPoint] = []
        self._best: EvalPoint | None = None
        self._ms: deque[float] = deque(maxlen=speed_window)
        self._ema = 0.0
        self._ema_steps = 0
        self._live_iters = 0  # iterations seen live this session (warm-up is left out of averages)
        self._tps_sum = 0.0
        self._tps_n = 0
        self._mfu_sum = 0.0
        self._mfu_n = 0
        self._last: IterationStats | None = None
        self._eval_seconds = 0.0
        self._n_evals = 0
        self._checkpoint_seconds = 0.0
        self._version = 0

    @property
    def version(self) -> int:
        """Bumped on every change: the drawing timer redraws only when it moved."""
        return self._version

    @property
    def last(self) -> IterationStats | None:
        """The newest iteration (one attribute read: cheap enough for every redraw tick)."""
        return self._last

    def __len__(self) -> int:
        with self._lock:
            return len(self.loss) + len(self._evals) + len(self._ms)

    def record(self, event: Event) -> None:
        """Take in one event (called on the publishing thread; never blocks for long)."""
        with self._lock:
            if isinstance(event, IterationStats):
                self._add_loss(event.iter, event.loss, event.tokens_seen, event.time)
                self._ms.append(event.ms_per_iter)
                self._last = event
                self._live_iters += 1
                if self._live_iters > WARMUP_ITERS:
                    self._tps_sum += event.tokens_per_sec
                    self._tps_n += 1
                    if event.mfu is not None:
                        self._mfu_sum += event.mfu
                        self._mfu_n += 1
            elif isinstance(event, EvalResult):
                self._add_eval(event.iter, event.train_loss, event.val_loss)
                self._eval_seconds += event.seconds
                self._n_evals += 1
            elif isinstance(event, CheckpointWritten):
                self._checkpoint_seconds += event.seconds
            elif isinstance(event, HistoryLoaded):
                self._load(event.records)
            elif isinstance(event, RunStarted):
                self._live_iters = 0  # a (re)started run warms up again
            else:
                return
            self._version += 1

    def extend_losses(self, points: Iterable[tuple[int, float]]) -> None:
        """Append many (iteration, loss) points at once."""
        with self._lock:
            for iteration, loss in points:
                self._add_loss(iteration, loss)
            self._version += 1

    def _add_loss(self, iteration: int, loss: float, tokens: int | None = None, when: float | None = None) -> None:
        self._ema = ema_step(self._ema, loss)
        self._ema_steps += 1
        self.loss.append(iteration, loss, ema_debiased(self._ema, self._ema_steps), tokens, when)

    def _add_eval(self, iteration: int, train: float, val: float) -> None:
        while self._evals and self._evals[-1][0] >= iteration:
            self._evals.pop()
        point = (iteration, train, val)
        self._evals.append(point)
        if self._best is None or val <= self._best[2]:
            self._best = point
        if len(self._evals) > self._max_evals:
            # thin out evenly, keeping the first and the newest
            self._evals = self._evals[:-1:2] + [self._evals[-1]]

    def _load(self, records: Sequence[dict[str, Any]]) -> None:
        for record in records:
            kind = record.get("type")
            try:
                if kind == "iter":
                    tokens, when = record.get("tokens_seen"), record.get("time")
                    self._add_loss(int(record["iter"]), float(record["loss"]),
                                   int(tokens) if tokens is not None else None, float(when) if when is not None else None)
                elif kind == "eval":
                    self._add_eval(int(record["iter"]), float(record["train_loss"]), float(record["val_loss"]))
            except (KeyError, TypeError, ValueError):
                continue  # a malformed line in an old metrics file must not break the view

    def snapshot(self, recent_window: int = 500) -> HistoryView:
        """Copies of what drawing needs; ``recent_window`` caps the zoomed-in view."""
        with self._lock:
            return HistoryView(
                version=self._version,
                recent=self.loss.recent(recent_window),
                whole=self.loss.whole(),
                evals=list(self._evals),
                best_eval=self._best,
                ms_recent=list(self._ms),
                last=self._last,
                tokens_per_sec_avg=self._tps_sum / self._tps_n if self._tps_n else None,
                mfu_avg=self._mfu_sum / self._mfu_n if self._mfu_n else None,
                eval_seconds=self._eval_seconds,
                n_evals=self._n_evals,
                checkpoint_seconds=self._checkpoint_seconds,
            )


# ---------------------------------------------------------------- x axes and a compared run

X_AXES = ("iter", "tokens", "time")  # what the loss chart's x axis can show (the `x` key cycles)


def x_values(points: Sequence[LossPoint], axis: str, t0: float | None = None) -> list[float | None]:
    """Each point's x: its iteration, tokens seen, or wall-clock seconds since ``t0`` (None when unknown)."""
    if axis == "iter":
        return [float(p[0]) for p in points]
    if axis == "tokens":
        return [None if p[3] is None else float(p[3]) for p in points]
    return [None if p[4] is None or t0 is None else p[4] - t0 for p in points]


def eval_x(evals: Sequence[EvalPoint], points: Sequence[LossPoint], axis: str, t0: float | None = None) -> list[float | None]:
    """Evals carry only their iteration: their x is that of the loss point at or just before it."""
    if axis == "iter":
        return [float(e[0]) for e in evals]
    import bisect

    iters = [p[0] for p in points]
    xs = x_values(points, axis, t0)
    out: list[float | None] = []
    for e in evals:
        k = bisect.bisect_right(iters, e[0]) - 1
        out.append(xs[k] if k >= 0 else (xs[0] if xs else None))
    return out


@dataclass(frozen=True)
class CompareCurve:
    """Another run's smoothed train loss and val losses, overlaid on the loss chart."""

    name: str
    points: list[LossPoint]
    evals: list[EvalPoint]

    @property
    def t0(self) -> float | None:
        return self.points[0][4] if self.points else None


def load_compare(run_dir: Any, max_points: int = 4000) -> CompareCurve:
    """A run directory's loss curves, read once from its metrics.jsonl (thinned like a watcher's history)."""
    from pathlib import Path

    from tuigpt.metrics_log import METRICS_FILE, load_history

    path = Path(run_dir)
    history = RunHistory(recent=max_points // 2, max_coarse=max_points // 2)
    history.record(HistoryLoaded(records=load_history(path / METRICS_FILE)))
    view = history.snapshot()
    return CompareCurve(name=path.name, points=view.whole, evals=view.evals)
