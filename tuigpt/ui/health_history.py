"""What the Health pane, the target projection and the sample timeline draw from, filled by the subscriber.

Like :class:`tuigpt.ui.history.RunHistory`: appended on the publishing (trainer) thread under a lock, read on
the app's thread through :meth:`HealthHistory.snapshot` (plain copies), so drawing never races training.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tuigpt.run import fmt
from tuigpt.run.events import Event, HistoryLoaded, IterationStats, RunStarted, SampleGenerated
from tuigpt.run.numbers import RunProgress
from tuigpt.run.projection import TargetProjection, TargetTracker, describe

KEPT = 4000  # iterations of grad norm, clip rate and LR kept (the sparklines bucket them to their width)
TIMELINE_KEPT = 500  # timeline samples kept


@dataclass(frozen=True)
class HealthPoint:
    iter: int
    grad_norm: float | None
    clip_rate: float | None
    lr: float
    update_ratio: float | None


@dataclass(frozen=True)
class HealthView:
    """A consistent copy for drawing."""

    version: int
    points: list[HealthPoint]
    layers: list[dict[str, Any]] | None  # the newest logged per-group norms
    layers_iter: int | None
    grad_clip: float | None
    target: float | None
    projection: TargetProjection | None
    target_text: str  # the chart title's words about the target: iteration, range, time ("" without a target)
    timeline: list[SampleGenerated] = field(default_factory=list)
    error: str | None = None  # recording an event failed: what is shown may be incomplete


class HealthHistory:
    """Health series, the newest per-group norms, the target projection and the timeline samples."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._points: deque[HealthPoint] = deque(maxlen=KEPT)
        self._layers: tuple[int, list[dict[str, Any]]] | None = None
        self._timeline: deque[SampleGenerated] = deque(maxlen=TIMELINE_KEPT)
        self._tracker = TargetTracker()
        self._progress = RunProgress()
        self._grad_clip: float | None = None
        self._config_target: float | None = None
        self._target: float | None = None  # typed with T: overrides the config's
        self.version = 0
        self.error: str | None = None

    def record(self, event: Event) -> None:
        """Called on the publishing thread, before the app posts the event: it must not raise (a failure is
        kept in ``error`` and the Health pane says so)."""
        with self._lock:
            try:
                self._take(event)
            except Exception as exc:  # the rest of the monitor must still get the event
                self.error = f"{type(exc).__name__}: {exc}"

    def _take(self, event: Event) -> None:
        self._tracker.observe(event)
        self._progress.observe(event)
        if isinstance(event, IterationStats):
            if event.grad_norm is not None or event.clip_rate is not None:
                while self._points and self._points[-1].iter >= event.iter:
                    self._points.pop()  # a rewind went back
                self._points.append(HealthPoint(event.iter, event.grad_norm, event.clip_rate, event.lr,
                                                event.update_ratio))
            if event.layers:
                self._layers = (event.iter, event.layers)
            self.version += 1
        elif isinstance(event, SampleGenerated) and event.timeline:
            self._timeline.append(event)
            self.version += 1
        elif isinstance(event, RunStarted):
            clip = event.config.get("grad_clip")
            self._grad_clip = float(clip) if clip else None
            target = event.config.get("target_loss")
            self._config_target = float(target) if isinstance(target, (int, float)) else None
            self.version += 1
        elif isinstance(event, HistoryLoaded):
            for past in event.events:
                self._take(past)

    def set_target(self, target: float | None) -> None:
        """A target typed in the monitor (None: back to the config's)."""
        with self._lock:
            self._target = target
            self.version += 1

    @property
    def target(self) -> float | None:
        return self._target if self._target is not None else self._config_target

    def snapshot(self, now: float | None = None) -> HealthView:
        with self._lock:
            target = self.target
            projection = self._tracker.project(target) if target is not None else None
            text = describe(self._tracker, self._progress, target, now, short=True) if target is not None else ""
            layers_iter, layers = self._layers if self._layers is not None else (None, None)
            return HealthView(self.version, list(self._points), layers, layers_iter, self._grad_clip, target,
                              projection, text, list(self._timeline), self.error)

    def target_text(self, now: float | None = None) -> str:
        """The status line's words about the target ("" without one): short, the clock time only while live."""
        with self._lock:
            target = self.target
            if target is None:
                return ""
            p = self._tracker.project(target)
            if p.iter is None:
                return fmt.target_short(p)
            return f"target {p.target:g} ≈ iter {p.iter:,}" + (f" {fmt.clock(now + eta, now)}" if now is not None and (
                eta := self._progress.eta_to(p.iter)) is not None else "")

    def tokens_per_iter(self) -> int | None:
        with self._lock:
            return self._tracker.tokens_per_iter

    def ms_per_iter(self) -> float | None:
        with self._lock:
            return self._progress.ms_per_iter
