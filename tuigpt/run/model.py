"""The run model: every event of a run folded once, and immutable snapshots of it for every front end.

The monitor, the headless lines, ``tuigpt watch`` (the monitor on a followed run), ``tuigpt runs`` and a
``--compare`` overlay each hold one :class:`RunModel` and draw, print or list from its :class:`RunSnapshot`; none
keeps a copy of run state of its own. Each piece of state has one owner here:

==========================  ====================================================================
state, outcome              ``_state``, ``_outcome`` (an ending's state comes from its EndReason)
position, speed, ETA        ``_progress`` (:class:`~tuigpt.run.numbers.RunProgress`)
elapsed (every session)     ``_clock`` (:class:`~tuigpt.run.numbers.RunClock`)
eval schedule               ``_progress.eval_interval`` (the trainer's, as published), ``_progress.next_eval()``,
                            ``_requested`` (asked for by this front end, not confirmed yet)
the eval under way          ``_evaluating``
loss curve, evals, best     ``_loss``, ``_evals``, ``_best`` (:class:`~tuigpt.run.series.DownsampledSeries`)
health series               ``_health``, ``_layers``
target projection           ``_tracker`` (:class:`~tuigpt.run.projection.TargetTracker`), ``_typed_target``
samples, timeline           ``_samples``, ``_timeline``
the plan (a run to a time)  ``_plan`` (the newest PlanUpdated; its iterations are ``_progress.max_iters``)
telemetry, cluster          ``_readings``, ``_cluster``
==========================  ====================================================================

Threads: :meth:`RunModel.record` runs on the publishing thread (the trainer's, a watcher's) and holds a lock
for a few list operations; :meth:`RunModel.snapshot` copies under the same lock. A part that fails to take an
event (a foreign record with a field of the wrong type) is reported in the snapshot's ``errors``, never raised:
the bus would otherwise detach the front end (the Health pane says so when its part failed).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from tuigpt.run import fmt
from tuigpt.run.commands import Command, SetEvalInterval
from tuigpt.run.events import (
    CheckpointWritten,
    ClusterStats,
    EvalIntervalChanged,
    EvalProgress,
    EvalResult,
    Event,
    HistoryLoaded,
    IterationStats,
    PlanUpdated,
    RunFailed,
    RunFinished,
    RunStarted,
    RunState,
    SampleGenerated,
    StateChanged,
    TelemetrySnapshot,
)
from tuigpt.run.numbers import Ema, Eta, RunClock, RunProgress
from tuigpt.run.projection import TargetProjection, TargetTracker, describe
from tuigpt.run.series import DownsampledSeries, EvalPoint, LossPoint
from tuigpt.run.wording import Context, Line, lines_for

BUSY_STATES = (RunState.EVALUATING, RunState.CHECKPOINTING, RunState.SAMPLING)
SAMPLES_KEPT = 10  # the last samples, to scroll back through
TIMELINE_KEPT = 500  # timeline samples (sample_every_eval)
HEALTH_KEPT = 4000  # iterations of grad norm, clip rate and LR (the sparklines bucket them to their width)
RECENT_WINDOW = 500  # iterations in a snapshot's recent loss (the chart's zoom)


# ---------------------------------------------------------------- what a snapshot holds


@dataclass(frozen=True)
class Progress:
    """Where the run is and how fast it goes (every number from run/numbers.py)."""

    iteration: int | None
    max_iters: int
    last: IterationStats | None  # the newest iteration
    ms_per_iter: float | None  # median of the recent window, warm-up left out
    ms_recent: list[float]  # that window
    tokens_per_sec_avg: float | None
    mfu_avg: float | None
    eval_seconds: float
    n_evals: int
    checkpoint_seconds: float
    eta_seconds: float | None  # eta's seconds
    eta: Eta | None = None  # time left with its range, from the first step (run/numbers.py RunProgress.eta)
    elapsed: float | None = None  # the run's wall time over all its sessions, up to now or its end (RunClock)

    @property
    def mean_eval_seconds(self) -> float | None:
        return self.eval_seconds / self.n_evals if self.n_evals else None


@dataclass(frozen=True)
class EvalSchedule:
    """The eval interval the trainer uses, the next eval it announced, and one this front end asked for."""

    interval: int | None  # None until the run started
    next_eval: int | None  # the next multiple of the interval, or the run's end (None before the run, at its end)
    requested: int | None  # sent, not confirmed by the trainer yet

    @property
    def current(self) -> int | None:
        """What a new request starts from: the interval asked for last, else the one in use."""
        return self.requested or self.interval


@dataclass(frozen=True)
class LossView:
    """The loss chart's data: plain copies, no references into the live buffers."""

    version: int
    recent: list[LossPoint]
    whole: list[LossPoint]
    evals: list[EvalPoint]
    best_eval: EvalPoint | None

    @property
    def val_change(self) -> float | None:
        """The newest eval's val loss minus the one before it (negative: it improved); None before two evals."""
        return self.evals[-1][2] - self.evals[-2][2] if len(self.evals) >= 2 else None

    @property
    def evals_since_best(self) -> int | None:
        """Evals after the best one: the val loss has not improved in this many (0: the newest is the best)."""
        if self.best_eval is None:
            return None
        return sum(1 for point in self.evals if point[0] > self.best_eval[0])


@dataclass(frozen=True)
class HealthPoint:
    iter: int
    grad_norm: float | None
    clip_rate: float | None
    lr: float
    update_ratio: float | None


@dataclass(frozen=True)
class HealthView:
    """The Health pane's data."""

    version: int
    points: list[HealthPoint]
    layers: list[dict[str, Any]] | None  # the newest logged per-group norms
    layers_iter: int | None
    grad_clip: float | None
    error: str | None = None  # a health number could not be taken: what is shown may be incomplete


@dataclass(frozen=True)
class TargetView:
    """The target loss (the config's target_loss, or one typed in the monitor) and where the loss reaches it."""

    target: float | None
    projection: TargetProjection | None
    line: str  # the whole projection in words, with the time to it (`tuigpt runs`; "" without a target)
    chart: str  # the chart title's words: iteration, range, clock time ("" without a target)
    status: str  # the status line's words: short, the clock time only while live ("" without a target)
    tokens_per_iter: int | None


@dataclass(frozen=True)
class RunSnapshot:
    """Everything a front end shows, as it was at ``now``."""

    now: float | None
    version: int  # bumped by every event that changed anything
    run: RunStarted | None
    state: RunState
    outcome: RunFinished | RunFailed | None
    progress: Progress
    schedule: EvalSchedule
    evaluating: EvalProgress | None  # the eval under way, until its result
    evals_seen: int
    loss: LossView
    health: HealthView
    target: TargetView
    samples: tuple[SampleGenerated, ...]  # the last SAMPLES_KEPT, oldest first
    timeline: tuple[SampleGenerated, ...]  # sample_every_eval's, oldest first
    readings: dict[str, Any]  # the newest telemetry reading of each kind seen ("cpu", "gpu")
    cluster: ClusterStats | None
    plan: PlanUpdated | None = None  # a run that ends at a time: the trainer's newest plan

    @property
    def over(self) -> bool:
        return self.outcome is not None

    @property
    def log_interval(self) -> int:
        return _log_interval(self.run)

    @property
    def untrained_eval(self) -> bool:
        """The eval under way is the untrained model's: the one at iteration 0 of a run that did not resume."""
        return self.evaluating is not None and untrained(self.evaluating.iter, self.run)

    @property
    def cooldown_from(self) -> int | None:
        """The iteration the schedule's cooldown starts after: a plan's (it moves as the run goes), else WSD's."""
        if self.plan is not None:
            return self.plan.cooldown_iter
        return self.run.cooldown_from if self.run is not None else None


def untrained(iteration: int, run: RunStarted | None) -> bool:
    """Whether an eval at ``iteration`` is of the untrained model (the trainer evaluates it first in a fresh run)."""
    return iteration == 0 and (run is None or not run.resumed)


def _log_interval(run: RunStarted | None) -> int:
    value = run.config.get("log_interval", 10) if run is not None else 10
    return max(1, int(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else 10


# ---------------------------------------------------------------- the model


class RunModel:
    """One run's events, folded once; :meth:`snapshot` hands out immutable copies."""

    def __init__(self, recent: int = 2000, max_coarse: int = 2000, max_evals: int = 2000) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self._run: RunStarted | None = None
        self._state = RunState.STARTING
        self._settled = RunState.STARTING  # the last state that was not a busy one
        self._outcome: RunFinished | RunFailed | None = None
        self._progress = RunProgress()
        self._requested: int | None = None
        self._evaluating: EvalProgress | None = None
        self._evals_seen = 0
        self._loss = DownsampledSeries(recent, max_coarse)
        self._ema = Ema()
        self._ema_iter: int | None = None  # the iteration of the EMA's last value (history comes thinned)
        self._max_evals = max_evals
        self._evals: list[EvalPoint] = []
        self._best: EvalPoint | None = None
        self._checkpoint_seconds = 0.0
        self._loss_version = 0
        self._health: deque[HealthPoint] = deque(maxlen=HEALTH_KEPT)
        self._layers: tuple[int, list[dict[str, Any]]] | None = None
        self._grad_clip: float | None = None
        self._health_version = 0
        self._tracker = TargetTracker()
        self._config_target: float | None = None
        self._typed_target: float | None = None
        self._samples: deque[SampleGenerated] = deque(maxlen=SAMPLES_KEPT)
        self._timeline: deque[SampleGenerated] = deque(maxlen=TIMELINE_KEPT)
        self._readings: dict[str, Any] = {}
        self._cluster: ClusterStats | None = None
        self._plan: PlanUpdated | None = None
        self._clock = RunClock()
        self._errors: dict[str, str] = {}

    # ------------------------------------------------------------ in

    def record(self, event: Event, words: bool = True) -> list[Line]:
        """Fold one event in (any thread; never raises) and, with ``words``, return its lines as worded with the
        run's context at this moment (what the events log and the headless lines show)."""
        with self._lock:
            settled = self._settled
            self._fold(event)
            self._version += 1
            try:
                context = self._context(event, settled) if words else None
            except Exception:  # a projection that cannot be fitted on a foreign record: the words go without it
                context = Context(settled=settled)
        if context is None:
            return []
        try:
            return lines_for(event, context)
        except Exception as exc:  # a foreign record with a field of the wrong type: said, not raised
            return [Line(f"warning: cannot word this {type(event).__name__} ({type(exc).__name__}: {exc})",
                         "warning")]

    def ask(self, command: Command) -> None:
        """This front end sent ``command``: a new eval interval counts as asked for until the trainer confirms it."""
        if isinstance(command, SetEvalInterval):
            with self._lock:
                self._requested = command.interval
                self._version += 1

    def set_target(self, target: float | None) -> None:
        """A target loss typed in the monitor (None: back to the config's target_loss)."""
        with self._lock:
            self._typed_target = target
            self._version += 1

    @property
    def version(self) -> int:
        return self._version

    @property
    def run(self) -> RunStarted | None:
        return self._run

    @property
    def state(self) -> RunState:
        return self._state

    @property
    def outcome(self) -> RunFinished | RunFailed | None:
        return self._outcome

    @property
    def evals_seen(self) -> int:
        return self._evals_seen

    def _context(self, event: Event, settled: RunState) -> Context:
        """What the event's words need: the ETA with this iteration counted, the target with this eval's point,
        the settled state before it."""
        target = ""
        if isinstance(event, EvalResult) and (goal := self._target()) is not None:
            target = describe(self._tracker, self._progress, goal, event.time)
        eta = self._progress.eta() if isinstance(event, IterationStats) else None
        return Context(max_iters=self._progress.max_iters, log_interval=_log_interval(self._run), eta=eta,
                       settled=settled, evals_seen=self._evals_seen - isinstance(event, EvalResult), target=target,
                       untrained=isinstance(event, EvalProgress) and untrained(event.iter, self._run))

    def _fold(self, event: Event) -> None:
        self._guard("clock", self._take_time, event)
        self._guard("progress", self._progress.observe, event)
        self._guard("target", self._tracker.observe, event)
        self._guard("loss", self._take_loss, event)
        self._guard("health", self._take_health, event)
        if isinstance(event, HistoryLoaded):
            for past in event.events:
                if isinstance(past, SampleGenerated):
                    self._take_sample(past)
                elif isinstance(past, EvalResult):
                    self._evals_seen += 1
                elif isinstance(past, PlanUpdated):
                    self._plan = past
            return
        if isinstance(event, RunStarted):
            self._run = event
            target = event.config.get("target_loss")
            self._config_target = float(target) if isinstance(target, (int, float)) and not isinstance(
                target, bool) else None
        elif isinstance(event, StateChanged):
            self._state = event.state
            if event.state not in BUSY_STATES:
                self._settled = event.state
        elif isinstance(event, (RunFinished, RunFailed)):
            self._outcome = event
            self._state = event.reason.state if isinstance(event, RunFinished) else RunState.ERROR
            self._settled = self._state
            self._evaluating = None
        elif isinstance(event, EvalIntervalChanged):
            self._requested = None  # (the next eval follows from the interval and the iteration: RunProgress)
        elif isinstance(event, EvalProgress):
            self._evaluating = event
        elif isinstance(event, EvalResult):
            self._evaluating = None
            self._evals_seen += 1
        elif isinstance(event, SampleGenerated):
            self._take_sample(event)
        elif isinstance(event, TelemetrySnapshot):
            self._readings[event.kind] = event.data
        elif isinstance(event, ClusterStats):
            self._cluster = event
        elif isinstance(event, PlanUpdated):
            self._plan = event

    def _take_time(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._clock.start(event.time, event.elapsed_before, event.resumed)
        elif isinstance(event, HistoryLoaded):
            for when, before in event.sessions:
                self._clock.start(when, before)
            for past in event.events:
                self._clock.mark(past.time)
            return
        self._clock.mark(event.time)

    def _guard(self, part: str, take: Any, event: Event) -> None:
        try:
            take(event)
        except Exception as exc:  # one part's trouble must not cost the others the event
            self._errors[part] = f"{type(exc).__name__}: {exc}"

    def _take_loss(self, event: Event) -> None:
        if isinstance(event, IterationStats):
            steps = event.iter - self._ema_iter if self._ema_iter is not None else 1
            self._ema_iter = event.iter
            self._loss.append(event.iter, event.loss, self._ema.update(event.loss, steps), event.tokens_seen,
                              self._clock.elapsed(event.time))  # the wall-clock axis: the run's time, gaps left out
        elif isinstance(event, EvalResult):
            self._add_eval((event.iter, event.train_loss, event.val_loss, event.train_bpb, event.val_bpb))
        elif isinstance(event, CheckpointWritten):
            self._checkpoint_seconds += event.seconds if event.waited is None else event.waited  # the run's time
        elif isinstance(event, HistoryLoaded):
            for past in event.events:
                self._take_loss(past)
            return
        elif not isinstance(event, RunStarted):
            return
        self._loss_version += 1

    def _add_eval(self, point: EvalPoint) -> None:
        while self._evals and self._evals[-1][0] >= point[0]:
            self._evals.pop()
        self._evals.append(point)
        if self._best is None or point[2] <= self._best[2]:
            self._best = point
        if len(self._evals) > self._max_evals:  # thin out evenly, keeping the first and the newest
            self._evals = self._evals[:-1:2] + [self._evals[-1]]

    def _take_health(self, event: Event) -> None:
        if isinstance(event, IterationStats):
            if event.grad_norm is not None or event.clip_rate is not None:
                while self._health and self._health[-1].iter >= event.iter:
                    self._health.pop()  # a rewind went back
                self._health.append(HealthPoint(event.iter, event.grad_norm, event.clip_rate, event.lr,
                                                event.update_ratio))
            if event.layers:
                self._layers = (event.iter, event.layers)
        elif isinstance(event, HistoryLoaded):
            for past in event.events:
                self._take_health(past)
            return
        elif isinstance(event, RunStarted):
            clip = event.config.get("grad_clip")
            self._health_version += 1  # (a grad_clip that is no number still counts as a change: the error shows)
            self._grad_clip = float(clip) if clip else None
        else:
            return
        self._health_version += 1

    def _take_sample(self, event: SampleGenerated) -> None:
        if event.timeline:
            self._timeline.append(event)
        elif not self._samples or (self._samples[-1].iter, self._samples[-1].time) != (event.iter, event.time):
            self._samples.append(event)  # (the same sample twice: a history replay, then live)

    def _target(self) -> float | None:
        return self._typed_target if self._typed_target is not None else self._config_target

    # ------------------------------------------------------------ out

    def snapshot(self, now: float | None = None, recent_window: int = RECENT_WINDOW) -> RunSnapshot:
        """An immutable copy of the run as folded so far; ``now`` (the caller's clock) times ETAs and projections,
        ``recent_window`` caps the zoomed-in loss view."""
        with self._lock:
            p = self._progress
            eta = p.eta()
            end = self._outcome.time if self._outcome is not None else now
            elapsed = self._clock.elapsed(end) if end is not None and self._run is not None else None
            progress = Progress(iteration=p.iteration, max_iters=p.max_iters, last=p.last, ms_per_iter=p.ms_per_iter,
                                ms_recent=p.speed.values, tokens_per_sec_avg=p.tokens_per_sec_avg, mfu_avg=p.mfu_avg,
                                eval_seconds=p.eval_seconds, n_evals=p.evals,
                                checkpoint_seconds=self._checkpoint_seconds,
                                eta_seconds=eta.seconds if eta is not None else None, eta=eta, elapsed=elapsed)
            schedule = EvalSchedule(p.eval_interval if self._run is not None else None,
                                    p.next_eval() if self._run is not None else None, self._requested)
            loss = LossView(self._loss_version, self._loss.recent(recent_window), self._loss.whole(),
                            list(self._evals), self._best)
            layers_iter, layers = self._layers if self._layers is not None else (None, None)
            health = HealthView(self._health_version, list(self._health), layers, layers_iter, self._grad_clip,
                                self._errors.get("health"))
            return RunSnapshot(
                now=now, version=self._version, run=self._run, state=self._state, outcome=self._outcome,
                progress=progress, schedule=schedule, evaluating=self._evaluating, evals_seen=self._evals_seen,
                loss=loss, health=health, target=self._target_view(now), samples=tuple(self._samples),
                timeline=tuple(self._timeline), readings=dict(self._readings), cluster=self._cluster,
                plan=self._plan)

    def _target_view(self, now: float | None) -> TargetView:
        target = self._target()
        tokens = self._tracker.tokens_per_iter
        if target is None:
            return TargetView(None, None, "", "", "", tokens)
        projection = self._tracker.project(target)
        line = describe(self._tracker, self._progress, target, now)
        chart = describe(self._tracker, self._progress, target, now, short=True)
        live = now if self._outcome is None else None
        if projection.iter is None:
            status = fmt.target_short(projection)
        else:
            eta = self._progress.eta_to(projection.iter)
            status = f"target {projection.target:g} ≈ iter {projection.iter:,}" + (
                f" {fmt.clock(live + eta, live)}" if live is not None and eta is not None and math.isfinite(eta) else "")
        return TargetView(target, projection, line, chart, status, tokens)
