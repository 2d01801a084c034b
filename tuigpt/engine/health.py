"""Training health: per-group norms of the model (on logged iterations), and the watches that tell the user
about trouble: loss spikes, a loss trending up (divergence), a stalled trainer (a watchdog thread), and a val loss
that stopped improving (a plateau).

The NaN policy (forensics, pause/stop/rewind) is :mod:`tuigpt.engine.nan_guard`.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
from typing import Any, Callable

import torch

from tuigpt.run.commands import Command, Stop
from tuigpt.run.events import Diverging, EvalResult, Event, IterationStats, Notice, RunState, Stalled, StateChanged
from tuigpt.run.numbers import WARMUP_ITERS, loss_rise

SPIKE_FACTOR = 3.0  # a loss this many times the recent median is reported as a spike
SPIKE_WINDOW = 50
SPIKE_MIN = 20  # losses seen before a median means anything
DIVERGE_WINDOW = 200  # iterations the divergence test looks back over
DIVERGE_RISE = 0.10  # the last quarter's median this far above the first quarter's is divergence
STALL_MIN_STEPS = 5  # timed steps (after warm-up) before a median step time means anything
STALL_POLL_MAX = 1.0  # the watchdog looks at least this often (seconds)


# ---------------------------------------------------------------- per-group norms


def group_name(parameter_name: str) -> str:
    """The group a parameter is reported in: "embed" (token and position embeddings; the token embedding is
    also the output layer, tied), "block N" (transformer block N), or "head" (everything after the blocks)."""
    parts = parameter_name.split(".")
    if parts[0] == "transformer" and len(parts) > 2 and parts[1] == "h" and parts[2].isdigit():
        return f"block {parts[2]}"
    if parts[0] == "transformer" and len(parts) > 1 and parts[1] in ("wte", "wpe"):
        return "embed"
    return "head"


class HealthProbe:
    """Which group each parameter is in, and per-group L2 norms from per-parameter ones (one index_add)."""

    def __init__(self, model: torch.nn.Module) -> None:
        named = list(model.named_parameters())  # a tied parameter once
        self.params = [p for _, p in named]
        groups = [group_name(n) for n, _ in named]
        blocks = sorted({g for g in groups if g.startswith("block ")}, key=lambda g: int(g.split()[1]))
        self.names = [g for g in ["embed", *blocks, "head"] if g in groups]
        position = {g: k for k, g in enumerate(self.names)}
        device = self.params[0].device if self.params else torch.device("cpu")
        self._index = torch.tensor([position[g] for g in groups], dtype=torch.long, device=device)

    def grads(self) -> list[torch.Tensor]:
        """Every parameter's gradient, zeros where there is none (so positions match the groups)."""
        return [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]

    def group_norms(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The L2 norm of each group of ``tensors`` (one per parameter, in parameter order), on the device."""
        norms = torch._foreach_norm(tensors)
        squares = torch.stack(norms).float().square()
        return torch.zeros(len(self.names), device=squares.device).index_add_(0, self._index, squares).sqrt()

    def layers(self, **columns: list[float]) -> list[dict[str, Any]]:
        """One dict per group: its name and each column's value (NaN/Inf become None in records)."""
        return [{"name": name, **{key: values[k] for key, values in columns.items()}}
                for k, name in enumerate(self.names)]


# ---------------------------------------------------------------- the loss


class LossWatch:
    """Spikes (a loss over SPIKE_FACTOR × the recent median: a warning) and divergence (the median of the last
    quarter of DIVERGE_WINDOW iterations DIVERGE_RISE above the first quarter's: a Diverging event, reported
    again only after the loss came back down)."""

    def __init__(self) -> None:
        self._recent: collections.deque[float] = collections.deque(maxlen=SPIKE_WINDOW)
        self._window: collections.deque[float] = collections.deque(maxlen=DIVERGE_WINDOW)
        self._rearm_below: float | None = None  # after a report: the level the loss must come back under

    def check(self, iteration: int, loss: float) -> list[Event]:
        """What this loss says, as events to publish (usually none)."""
        events: list[Event] = []
        recent = self._recent
        if len(recent) >= SPIKE_MIN:
            median = sorted(recent)[len(recent) // 2]
            if loss > SPIKE_FACTOR * median:
                events.append(Notice(level="warning", message=f"loss spike at iteration {iteration}: {loss:.4f} is "
                                     f"{loss / median:.1f}x the recent median {median:.4f}"))
        recent.append(loss)
        self._window.append(loss)
        if len(self._window) == DIVERGE_WINDOW and iteration % 10 == 0:  # medians of 50: cheap, but not every step
            before, now = loss_rise(list(self._window))
            if self._rearm_below is not None:
                if now < self._rearm_below:
                    self._rearm_below = None
            elif now > before * (1 + DIVERGE_RISE):
                self._rearm_below = before * (1 + DIVERGE_RISE / 2)
                events.append(Diverging(iter=iteration, window=DIVERGE_WINDOW, loss_before=before, loss_now=now))
        return events


# ---------------------------------------------------------------- a stalled trainer


class StallWatch:
    """A watchdog thread: publishes Stalled when no iteration finished for ``factor`` × the median step time
    (never less than ``min_seconds``) while the run is RUNNING (evals, checkpoints, samples and pauses do not
    count). A stalled trainer thread cannot report itself, so this runs beside it, fed by the event bus."""

    def __init__(self, publish: Callable[[Event], None], factor: float, min_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._publish = publish
        self.factor, self.min_seconds = factor, min_seconds
        self._clock = clock
        self._ms: collections.deque[float] = collections.deque(maxlen=50)
        self._seen = 0
        self._last = clock()
        self._iter = 0
        self._running = False
        self._stalled_at: float | None = None  # when the current stall was reported
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, IterationStats):
            with self._lock:
                self._seen += 1
                if self._seen > WARMUP_ITERS and event.ms_per_iter > 0:
                    self._ms.append(event.ms_per_iter)
                self._last, self._iter = self._clock(), event.iter
                stalled_at, self._stalled_at = self._stalled_at, None
            if stalled_at is not None:
                self._publish(Notice(level="info", message=f"iterations go on: iteration {event.iter} finished "
                                     f"{self._clock() - stalled_at:.0f} s after the stall was reported"))
        elif isinstance(event, StateChanged):
            with self._lock:
                running = event.state == RunState.RUNNING
                if running and not self._running:
                    self._last = self._clock()  # time spent evaluating or paused is not a stall
                self._running = running

    def threshold(self) -> float | None:
        """Seconds without an iteration that count as a stall; None until enough steps were timed."""
        with self._lock:
            if len(self._ms) < STALL_MIN_STEPS:
                return None
            return max(self.factor * statistics.median(self._ms) / 1000.0, self.min_seconds)

    def start(self) -> None:
        if self.factor > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="tuigpt-stall-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def check(self) -> Stalled | None:
        """One look (the thread's loop; tests call it with their own clock): publish and return a new stall."""
        threshold = self.threshold()
        if threshold is None:
            return None
        with self._lock:
            idle = self._clock() - self._last
            if not (self._running and self._stalled_at is None and idle > threshold):
                return None
            self._stalled_at = self._clock()
            event = Stalled(iter=self._iter, seconds=idle, median_ms=statistics.median(self._ms), threshold_s=threshold)
        self._publish(event)
        return event

    def _watch(self) -> None:
        while not self._stop.wait(min(STALL_POLL_MAX, max(0.02, (self.threshold() or 10.0) / 10))):
            self.check()


class PlateauWatch:
    """Counts the evals since the val loss last improved; at ``evals`` of them in a row, a warning with the topic
    "plateau" (an alert: bell, notification, alert_command) and, with ``stop``, the same stop the `q` key's *save
    and stop* sends. Fed by the event bus; counted from this session's first eval (a resume starts at 0)."""

    def __init__(self, publish: Callable[[Event], None], send: Callable[[Command], Any], evals: int,
                 stop: bool, end: Callable[[], int]) -> None:
        self._publish, self._send = publish, send
        self.evals, self.stop, self.end = evals, stop, end  # end: the run's last iteration (a plan's moves)
        self.since = 0  # evals since the best
        self._best_iter: int | None = None

    def __call__(self, event: Event) -> None:
        if not isinstance(event, EvalResult) or self.evals < 1:
            return
        if event.is_best:
            self.since, self._best_iter = 0, event.iter
            return
        self.since += 1
        if self.since != self.evals:  # said once a plateau; a new best starts the count again
            return
        at = f" at iter {self._best_iter:,}" if self._best_iter is not None else ""
        message = (f"plateau: val loss has not improved in {self.evals} evals (best {event.best_val_loss:.4f}{at}; "
                   f"now {event.val_loss:.4f})")
        if self.stop and event.iter < self.end():  # (at the last eval the run ends anyway, as done)
            message += ": plateau_stop, so the run stops here and saves last.pt"
            self._send(Stop(save=True))
        self._publish(Notice(level="warning", message=message, topic="plateau"))
