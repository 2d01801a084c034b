"""The events the trainer and the telemetry samplers publish, and the bus that fans them out.

Every front end (Textual app, headless printer, metrics.jsonl writer, control socket) subscribes to an
:class:`EventBus`. Subscribers are called on the publishing thread, so they must be quick and must never
block (the Textual app only appends to its history and calls ``post_message``). Commands travel the other
way: see :mod:`tuigpt.run.commands`.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


class RunState(str, enum.Enum):
    """What the trainer is doing right now."""

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    EVALUATING = "EVALUATING"
    CHECKPOINTING = "CHECKPOINTING"
    SAMPLING = "SAMPLING"
    DONE = "DONE"
    STOPPED = "STOPPED"
    ERROR = "ERROR"


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """Base class: every event carries the wall-clock time it was made."""

    time: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class RunStarted(Event):
    """The run is set up and about to train (also sent on resume)."""

    run_name: str
    run_dir: str
    config_path: str | None
    config: dict[str, Any]
    n_params: int
    device: str
    dtype: str
    dtype_reason: str
    start_iter: int
    max_iters: int
    tokens_per_iter: int
    flops_per_token: int
    peak_flops: float | None
    peak_label: str
    eval_interval: int
    resumed: bool
    compiled: bool = False  # torch.compile on (records written before this field say nothing: off)
    compile_reason: str = ""  # why, shown with the dtype's reason on the run's first line

    @property
    def compile_text(self) -> str:
        """e.g. "compile off (auto: off, compiled steps measured 0.95x of eager here)"."""
        return f"compile {'on' if self.compiled else 'off'}" + (f" ({self.compile_reason})" if self.compile_reason
                                                                 else "")


@dataclass(frozen=True)
class IterationStats(Event):
    """One training iteration (published every iteration; sinks decide what to keep)."""

    iter: int
    loss: float
    lr: float
    ms_per_iter: float
    tokens_per_sec: float
    mfu: float | None  # fraction of peak_flops, None when no peak is known
    tokens_seen: int
    train_seconds: float  # training time so far, eval and checkpoints excluded


@dataclass(frozen=True)
class EvalResult(Event):
    """Mean losses over eval_iters batches of each split."""

    iter: int
    train_loss: float
    val_loss: float
    best_val_loss: float
    is_best: bool
    seconds: float


@dataclass(frozen=True)
class CheckpointWritten(Event):
    """A checkpoint file is on disk, complete (written atomically)."""

    iter: int
    path: str
    reason: str  # "eval", "best", "command", "stop", "final"
    seconds: float


@dataclass(frozen=True)
class SampleGenerated(Event):
    """Text generated from the current model."""

    iter: int
    prompt: str
    text: str
    seconds: float


@dataclass(frozen=True)
class StateChanged(Event):
    """The trainer moved to another RunState."""

    state: RunState
    iter: int


@dataclass(frozen=True)
class EvalIntervalChanged(Event):
    """The eval interval the trainer now uses."""

    eval_interval: int
    next_eval_iter: int


@dataclass(frozen=True)
class Notice(Event):
    """Something the user should read: level is "info", "warning" or "error"."""

    level: str
    message: str


@dataclass(frozen=True)
class RunFailed(Event):
    """Training stopped on an unexpected error."""

    iter: int
    message: str
    traceback: str
    last_checkpoint: str | None


@dataclass(frozen=True)
class RunFinished(Event):
    """Training is over: max_iters reached ("done"), stopped by a command ("stopped"), or ended on a NaN loss
    ("nan") or an unwritable checkpoint ("disk") in a headless run."""

    iter: int
    reason: str  # "done", "stopped", "nan" or "disk"
    best_val_loss: float | None
    last_val_loss: float | None
    wall_seconds: float
    train_seconds: float
    eval_seconds: float
    checkpoint_seconds: float
    last_checkpoint: str | None
    tokens_seen: int


@dataclass(frozen=True)
class HistoryLoaded(Event):
    """Iterations and evals of earlier sessions, read back from metrics.jsonl (thinned), oldest first."""

    events: list[Event]


@dataclass(frozen=True)
class TelemetrySnapshot(Event):
    """One reading of a telemetry sampler; ``kind`` is "cpu" or "gpu".

    ``data`` is a :class:`~tuigpt.run.readings.CpuReading` or :class:`~tuigpt.run.readings.GpuSnapshot`;
    values a machine does not expose are None (never 0), with the reason in ``unavailable``.
    """

    kind: str
    data: Any


@dataclass(frozen=True)
class ClusterStats(Event):
    """Per-rank timings of a multi-process run, gathered once per log_interval (rank 0 publishes it).

    ``ranks`` holds one dict per rank, in rank order, each with:
      rank (int), host (str),
      ms_per_iter  mean wall time of an optimizer step on that rank,
      data_ms      of which waiting for batches,
      compute_ms   forward + backward, without the exposed all-reduce,
      comm_ms      exposed gradient all-reduce: the synced micro-step's backward minus a no_sync one,
      backward_ms  backward alone (what the all-reduce should hide under);
    all means over the iterations since the previous ClusterStats, in milliseconds.
    Every rank's ms_per_iter is about the same (the fast ones wait in the all-reduce), so ranks are
    compared on data_ms + compute_ms: ``slowest_over_fastest`` is the largest over the smallest (1.0:
    balanced), ``comm_over_compute`` is total comm_ms over total compute_ms (None when unknown),
    ``straggler`` the rank that has been >= 15% slower than the fastest for 3 gathers in a row.
    """

    iter: int
    ranks: list[dict[str, Any]]
    slowest_over_fastest: float
    comm_over_compute: float | None
    straggler: int | None = None
    backend: str = ""


# ---------------------------------------------------------------- bus


class Subscriber(Protocol):
    def __call__(self, event: Event) -> None: ...


class EventBus:
    """Fan-out of events to any number of subscribers, safe across threads.

    A subscriber that raises cannot stop training: its error is caught for that
    call and published as an error Notice to the other subscribers.
    """

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Callable[[Event], None]) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        failed: list[tuple[Callable[[Event], None], BaseException]] = []
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception as exc:  # a broken sink must not kill training
                failed.append((subscriber, exc))
        for subscriber, exc in failed:
            notice = Notice(level="error", message=f"event sink {getattr(subscriber, '__qualname__', subscriber)!s} failed: {exc!r}")
            for other in subscribers:
                if other is not subscriber:
                    try:
                        other(notice)
                    except Exception:
                        pass
