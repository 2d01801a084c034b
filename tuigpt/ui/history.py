"""Bounded, thread-safe history of a run, filled by the subscriber and read by drawing.

The subscriber callback runs on the trainer thread and appends every event here
(cheap: a few list operations under a lock), so the loss curve keeps every
iteration even when the UI drops superseded IterationStats messages. Drawing
takes a :meth:`RunHistory.snapshot` (plain copies) on a timer.

Memory stays bounded however long the run: :class:`DownsampledSeries` keeps the
last ``recent`` points at full resolution plus a whole-run view that halves its
resolution (merges pairs) whenever it reaches ``max_coarse`` points.

The derived numbers (smoothed loss, speed, ETA) come from :mod:`tuigpt.run.numbers`, as for every other
front end.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tuigpt.run.events import CheckpointWritten, EvalResult, Event, HistoryLoaded, IterationStats, RunStarted
from tuigpt.run.numbers import Ema, RunProgress

# (iteration, raw loss, smoothed loss, tokens seen, wall-clock time) — the last two None when unknown
# (old metrics files); they let the chart put tokens or time on the x axis
LossPoint = tuple[int, float, float, "int | None", "float | None"]
# (iteration, train loss, val loss)
EvalPoint = tuple[int, float, float]


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
    ms_recent: list[float]  # the speed window (what ms_per_iter is the median of)
    last: IterationStats | None
    ms_per_iter: float | None
    tokens_per_sec_avg: float | None
    mfu_avg: float | None
    eval_seconds: float
    n_evals: int
    checkpoint_seconds: float
    eta_seconds: float | None

    @property
    def mean_eval_seconds(self) -> float | None:
        return self.eval_seconds / self.n_evals if self.n_evals else None


class RunHistory:
    """Everything the panes draw from, appended from the subscriber thread."""

    def __init__(self, recent: int = 2000, max_coarse: int = 2000, max_evals: int = 2000) -> None:
        self._lock = threading.Lock()
        self.loss = DownsampledSeries(recent, max_coarse)
        self._max_evals = max_evals
        self._evals: list[EvalPoint] = []
        self._best: EvalPoint | None = None
        self._ema = Ema()
        self.progress = RunProgress()
        self._checkpoint_seconds = 0.0
        self._version = 0

    @property
    def version(self) -> int:
        """Bumped on every change: the drawing timer redraws only when it moved."""
        return self._version

    @property
    def last(self) -> IterationStats | None:
        """The newest iteration (one attribute read: cheap enough for every redraw tick)."""
        return self.progress.last

    def __len__(self) -> int:
        with self._lock:
            return len(self.loss) + len(self._evals)

    def record(self, event: Event) -> None:
        """Take in one event (called on the publishing thread; never blocks for long)."""
        with self._lock:
            self.progress.observe(event)  # speed, evals, ETA
            if self._take(event):
                self._version += 1

    def _take(self, event: Event) -> bool:
        """Add what the charts draw; whether anything drawn changed."""
        if isinstance(event, IterationStats):
            self._add_loss(event.iter, event.loss, event.tokens_seen, event.time)
        elif isinstance(event, EvalResult):
            self._add_eval(event.iter, event.train_loss, event.val_loss)
        elif isinstance(event, CheckpointWritten):
            self._checkpoint_seconds += event.seconds
        elif isinstance(event, HistoryLoaded):
            for past in event.events:
                self._take(past)
        else:
            return isinstance(event, RunStarted)
        return True

    def eta_seconds(self) -> float | None:
        with self._lock:
            return self.progress.eta_seconds()

    def extend_losses(self, points: Iterable[tuple[int, float]]) -> None:
        """Append many (iteration, loss) points at once."""
        with self._lock:
            for iteration, loss in points:
                self._add_loss(iteration, loss)
            self._version += 1

    def _add_loss(self, iteration: int, loss: float, tokens: int | None = None, when: float | None = None) -> None:
        self.loss.append(iteration, loss, self._ema.update(loss), tokens, when)

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

    def snapshot(self, recent_window: int = 500) -> HistoryView:
        """Copies of what drawing needs; ``recent_window`` caps the zoomed-in view."""
        with self._lock:
            p = self.progress
            return HistoryView(
                version=self._version,
                recent=self.loss.recent(recent_window),
                whole=self.loss.whole(),
                evals=list(self._evals),
                best_eval=self._best,
                ms_recent=p.speed.values,
                last=p.last,
                ms_per_iter=p.ms_per_iter,
                tokens_per_sec_avg=p.tokens_per_sec_avg,
                mfu_avg=p.mfu_avg,
                eval_seconds=p.eval_seconds,
                n_evals=p.evals,
                checkpoint_seconds=self._checkpoint_seconds,
                eta_seconds=p.eta_seconds(),
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
