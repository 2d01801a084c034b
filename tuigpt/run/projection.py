"""When will the loss reach a target? A power law fitted to the recent curve, projected forward.

:class:`TargetTracker` keeps the curves from a run's events (the monitor, the headless printer and
`tuigpt runs` feed it the same records, so they project the same iteration); the fit itself is
:func:`tuigpt.run.numbers.fit_power_law`. ``benchmarks/target_projection.py`` measures how far off it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tuigpt.run import fmt
from tuigpt.run.events import EvalResult, Event, HistoryLoaded, IterationStats, RunStarted
from tuigpt.run.numbers import MIN_FIT_POINTS, Ema, RunProgress, fit_power_law, power_law_crossing

# fit on the last this fraction of the tokens seen: the central fit, then the two that make the range. Measured by
# benchmarks/target_projection.py on the shipped configs' histories replayed from half-way: the last 20% projects
# closest (median error 25% of the remaining distance, against 56% for the last half): losses fall faster late
# in a run (warmup ending, the learning rate decaying) than a power law fitted on a longer stretch expects.
FIT_WINDOWS = (0.2, 0.5, 0.1)
MAX_TRACK_POINTS = 4000  # smoothed train points kept (halved when full)
FIT_MAX_POINTS = 100  # a window is thinned evenly to this many points before fitting (the monitor fits every second)
HORIZON = 100.0  # a crossing beyond this many times the tokens seen so far counts as "not converging"
NOT_CONVERGING = "not converging towards it at this rate"


@dataclass(frozen=True)
class TargetProjection:
    """When the loss reaches ``target``: already (``reached_at``), projected (``iter``, with a range), or never
    at this rate (``why``)."""

    target: float
    basis: str  # "val" (the evals' val loss) or "train" (the EMA of the logged train loss)
    now: float | None  # the curve's latest value
    reached_at: int | None = None
    iter: int | None = None
    iter_lo: int | None = None
    iter_hi: int | None = None
    why: str = ""
    tokens: float | None = None  # projected crossing in tokens seen (the chart draws the curve up to it)
    fit: tuple[float, float, float] | None = None  # (E, A, alpha) of the central fit, in tokens


class TargetTracker:
    """The curves a target-loss projection is fitted on, from a run's events: every eval's val loss and the
    bias-corrected EMA of the train loss at logged iterations (what metrics.jsonl holds, so the monitor, the
    headless lines and `tuigpt runs` fit the same points). Both against tokens seen."""

    def __init__(self, floor: bool = True) -> None:
        self.floor = floor
        self.log_interval = 10
        self.tokens_per_iter: int | None = None
        self.train: list[tuple[float, float, int]] = []  # (tokens, EMA, iteration)
        self.val: list[tuple[float, float, int]] = []
        self._stride = 1
        self._seen = 0
        self._ema = Ema()
        self._last: tuple[int, float] | None = None  # (iteration, tokens) of the newest logged iteration
        self._version = 0  # bumped by every point: a projection is only fitted again when it moved
        self._cached: tuple[int, float, TargetProjection] | None = None

    def observe(self, event: Event) -> None:
        if isinstance(event, IterationStats):
            if event.iter % self.log_interval == 0:
                self._add_train(event.iter, float(event.tokens_seen), event.loss)
        elif isinstance(event, EvalResult):
            self._add_val(event.iter, event.val_loss)
        elif isinstance(event, RunStarted):
            self.tokens_per_iter = event.tokens_per_iter
            self.log_interval = max(1, int(event.config.get("log_interval", 10) or 10))
        elif isinstance(event, HistoryLoaded):
            for past in event.events:
                self.observe(past)

    def _add_train(self, iteration: int, tokens: float, loss: float) -> None:
        if not math.isfinite(loss):
            return
        while self.train and self.train[-1][2] >= iteration:  # a rewind or resume went back
            self.train.pop()
        self._last = (iteration, tokens)
        self._version += 1
        smooth = self._ema.update(loss)
        self._seen += 1
        if self._seen % self._stride == 0 or not self.train:
            self.train.append((tokens, smooth, iteration))
        if len(self.train) >= MAX_TRACK_POINTS:
            self.train = self.train[::2]
            self._stride *= 2

    def _add_val(self, iteration: int, val: float) -> None:
        if not math.isfinite(val):
            return
        while self.val and self.val[-1][2] >= iteration:
            self.val.pop()
        tokens = self._tokens_at(iteration)
        if tokens is not None:
            self.val.append((tokens, val, iteration))
            self._version += 1

    def _tokens_at(self, iteration: int) -> float | None:
        if self._last is not None and self.tokens_per_iter:
            last_iter, last_tokens = self._last
            return last_tokens + (iteration - last_iter) * self.tokens_per_iter
        return float(iteration * self.tokens_per_iter) if self.tokens_per_iter else None

    def project(self, target: float) -> TargetProjection:
        """Fit the val curve (enough evals in the window) or else the smoothed train curve, and project."""
        cached = self._cached
        if cached is not None and cached[0] == self._version and cached[1] == target:
            return cached[2]
        projection = self._project(target)
        self._cached = (self._version, target, projection)
        return projection

    def _project(self, target: float) -> TargetProjection:
        val_window = self._window(self.val, FIT_WINDOWS[0])
        basis, curve = ("val", self.val) if len(val_window) >= MIN_FIT_POINTS else ("train", self.train)
        if not curve:
            return TargetProjection(target, basis, None, why="no loss yet")
        now_tokens, now, now_iter = curve[-1]
        if now <= target:
            first = next(it for _, y, it in curve if y <= target)
            return TargetProjection(target, basis, now, reached_at=first)
        crossings: list[float | None] = []
        central_fit = None
        for k, fraction in enumerate(FIT_WINDOWS):
            pts = self._window(curve, fraction)
            fit = fit_power_law([p[0] for p in pts], [p[1] for p in pts], self.floor)
            if k == 0:
                if fit is None:
                    return TargetProjection(target, basis, now, why=f"too few points to fit ({len(pts)} of "
                                                                    f"{MIN_FIT_POINTS})")
                central_fit = fit
            crossings.append(None if fit is None else power_law_crossing(fit, target))
        centre = crossings[0]
        if centre is None or centre > HORIZON * now_tokens:
            return TargetProjection(target, basis, now, why=NOT_CONVERGING, fit=central_fit)
        per_iter = self.tokens_per_iter or 1
        iters = [now_iter + max(0.0, c - now_tokens) / per_iter for c in crossings if c is not None
                 and c <= HORIZON * now_tokens]
        return TargetProjection(target, basis, now, iter=round(iters[0]), iter_lo=round(min(iters)),
                                iter_hi=round(max(iters)), tokens=centre, fit=central_fit)

    @staticmethod
    def _window(curve: list[tuple[float, float, int]], fraction: float) -> list[tuple[float, float, int]]:
        if not curve:
            return []
        start = curve[-1][0] * (1.0 - fraction)
        window = [p for p in curve if p[0] >= start and p[0] > 0]
        if len(window) > FIT_MAX_POINTS:
            step = len(window) / FIT_MAX_POINTS
            window = [window[int(k * step)] for k in range(FIT_MAX_POINTS - 1)] + [window[-1]]
        return window


def describe(tracker: TargetTracker, progress: RunProgress, target: float, now: float | None = None,
             short: bool = False) -> str:
    """The projection as one line, with the time to it at the run's recent speed (evals included); ``short``:
    the iteration, its range and the clock time only (a chart title)."""
    p = tracker.project(target)
    if short:
        return fmt.target_short(p, progress.eta_to(p.iter) if p.iter is not None else None, now)
    seconds = None
    if p.iter is not None and p.iter_lo is not None and p.iter_hi is not None:
        seconds = (progress.eta_to(p.iter), progress.eta_to(p.iter_lo), progress.eta_to(p.iter_hi))
    return fmt.target(p, progress.max_iters or None, seconds, now)
