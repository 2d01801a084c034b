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


class EndReason(str, enum.Enum):
    """How a run ended: RunFinished.reason, the trainer's outcome, the exit code (run/exits.py) and the closing
    line's words (run/wording.py) all take it from here. A str, so records keep writing "done"."""

    DONE = "done"  # max_iters reached (or eval_only evaluated)
    STOPPED = "stopped"  # a Stop command: a key, a watcher, a signal
    NAN = "nan"  # a NaN/Inf loss or gradient ended a headless run (on_nan: stop)
    DISK = "disk"  # a checkpoint or metrics.jsonl could not be written in a headless run

    @property
    def state(self) -> RunState:
        """The state a run that ended this way is in."""
        return {EndReason.DONE: RunState.DONE, EndReason.STOPPED: RunState.STOPPED}.get(self, RunState.ERROR)


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
    cooldown_from: int | None = None  # schedule wsd: the cooldown starts after this iteration (the chart marks it)
    # the tokenizer ("char", "gpt2", ...) and the UTF-8 bytes its tokens spell on average in the training data: runs
    # of different tokenizers are compared in bits per byte (None in records written before these fields)
    tokenizer: str | None = None
    bytes_per_token: float | None = None
    # a run that ends at a time (PlanUpdated says how many iterations it plans): "budget" or "deadline" ("" none),
    # as the user wrote it, and the wall time it must end by at the start; max_iters is then its cap, 0 when none
    end_kind: str = ""
    end_text: str = ""
    deadline: float | None = None
    # the run's wall time in its earlier sessions, up to the checkpoint this one resumed from (0 for a fresh run;
    # None in records written before it): a run's elapsed time counts every session, never the gaps between them
    elapsed_before: float | None = None
    # the batches an eval computes, both splits: eval_iters each, fewer for a split read whole (None: records
    # written before it, which sampled eval_iters of each)
    eval_batches: int | None = None

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
    # the step's wall time: on CUDA on the GPU's clock (events, from its start after a sync); elsewhere the host's
    ms_per_iter: float
    tokens_per_sec: float
    mfu: float | None  # fraction of peak_flops, None when no peak is known
    tokens_seen: int
    train_seconds: float  # training time so far, eval and checkpoints excluded
    # training health (None in metrics files written before it existed)
    grad_norm: float | None = None  # global gradient norm before clipping (unscaled), every iteration
    clipped: bool | None = None  # this step's gradients were clipped to grad_clip (None: clipping is off)
    clip_rate: float | None = None  # fraction of the last CLIP_WINDOW steps that were clipped
    update_ratio: float | None = None  # ‖Δw‖/‖w‖ of this step's update, whole model: logged iterations only
    # logged iterations only: one dict per parameter group ("embed", "block N", "head") with its gradient norm
    # before clipping ("grad"), weight norm before the update ("weight") and ‖Δw‖/‖w‖ ("update")
    layers: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class EvalResult(Event):
    """Mean losses over eval_iters batches of each split, and the same batches in bits per byte (run.numbers
    bits_per_byte; None in records written before them, or when the batches spelled no bytes)."""

    iter: int
    train_loss: float
    val_loss: float
    best_val_loss: float
    is_best: bool
    seconds: float
    train_bpb: float | None = None
    val_bpb: float | None = None


@dataclass(frozen=True)
class EvalProgress(Event):
    """An eval under way: ``done`` of ``total`` batches (both splits together) after ``seconds``, published at
    most a few times a second, so a long first eval shows what it is doing. metrics.jsonl skips it; the
    socket streams it."""

    iter: int
    done: int
    total: int
    seconds: float


@dataclass(frozen=True)
class CheckpointWritten(Event):
    """A checkpoint file is on disk, complete (written atomically)."""

    iter: int
    path: str
    reason: str  # "eval", "best", "command", "stop", "final"
    seconds: float  # what the write took
    # what the run waited for it: written while training went on (engine/checkpoint_writer.py), the copy to host
    # memory only; None: the whole write (in the foreground)
    waited: float | None = None


@dataclass(frozen=True)
class SampleGenerated(Event):
    """Text generated from the current model."""

    iter: int
    prompt: str
    text: str
    seconds: float
    timeline: bool = False  # generated after an eval with the fixed prompt and seed (sample_every_eval)


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
    topic: str = ""  # what it is about, for alerts: "throttling", "checkpoint" (a write failed), or ""


@dataclass(frozen=True)
class RunFailed(Event):
    """Training stopped on an unexpected error."""

    iter: int
    message: str
    traceback: str
    last_checkpoint: str | None


@dataclass(frozen=True)
class RunFinished(Event):
    """Training is over, for one of the ways in :class:`EndReason`."""

    iter: int
    reason: EndReason
    best_val_loss: float | None
    last_val_loss: float | None
    # the run's times over all its sessions up to here (a resume continues them from its checkpoint; the gaps
    # between sessions are not counted). Records written before session_seconds counted wall, eval and checkpoint
    # time of their own session only.
    wall_seconds: float
    train_seconds: float
    eval_seconds: float
    checkpoint_seconds: float
    last_checkpoint: str | None
    tokens_seen: int
    session_seconds: float | None = None  # this session's wall time (None in records written before it)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", EndReason(self.reason))  # "done" read from a record is the same ending


@dataclass(frozen=True)
class PlanUpdated(Event):
    """A run that ends at a time (time_budget or deadline) planned its rest: how many iterations fit, where its
    cooldown starts and when, from its measured step, eval and checkpoint times (see run/plan.py). Published at
    the start, at every eval, when the speed changes by more than noise, on a pause or resume, when the
    cooldown begins, and when max_iters ends it first."""

    iter: int
    total_iters: int  # the run's last iteration (the final eval and checkpoint follow it)
    cooldown_iter: int | None  # the learning rate falls from the peak after this iteration (None: no cooldown)
    cooldown_at: float | None  # the wall time the cooldown is expected to begin (None: begun, or none)
    end_at: float  # the wall time the run is expected to end, final eval and checkpoint included
    deadline: float  # the wall time it must end by (a time budget's moves later with every pause)
    kind: str  # "budget" (run time: a pause extends it) or "deadline" (the wall clock)
    length: float  # seconds from the start to the deadline, pauses excluded (how long the run is planned for)
    step_ms: float  # the step time the plan assumes: the mean of the recent steps, wall to wall
    step_spread: float  # how sure: how much the speed varies (plan.speed_noise; single steps' spread at first)
    reason: str  # start, eval, speed, pause, resume, cooldown, cap
    cooldown_begun: bool = False
    capped: bool = False  # max_iters ends the run before its time is up
    moved: float = 0.0  # seconds the cooldown's start (after it began: the end) moved since the last plan shown
    iters_before: int | None = None  # total_iters of the last plan shown


@dataclass(frozen=True)
class NanDetected(Event):
    """A loss or gradient went NaN/Inf; the step was not applied. What was known when it happened."""

    iter: int  # the iteration that failed (not counted: the run stands at iter - 1)
    cause: str  # "loss" or "gradient"
    loss: float | None  # None in records: NaN/Inf are not JSON
    grad_norm: float | None
    lr: float
    layers: list[dict[str, Any]]  # this step's gradient norm per parameter group: name, grad
    recent: list[dict[str, Any]]  # the last good steps, oldest first: iter, loss, grad_norm, lr
    recent_layers: list[dict[str, Any]]  # the last good logged steps' per-group norms: iter, layers
    batch_starts: list[list[int]]  # token offsets of this step's training windows, one list per micro-step
    action: str  # what happens now: "pause", "stop" or "rewind"


@dataclass(frozen=True)
class Rewound(Event):
    """on_nan: rewind put the run back on its last good checkpoint after a NaN, with a lower learning rate."""

    from_iter: int  # the iteration that failed
    iter: int  # where training goes on
    checkpoint: str | None  # what was restored; None: no checkpoint yet, the (finite) weights in memory were kept
    lr_scale: float  # the schedule's learning rate is multiplied by this from now on
    rewinds: int  # rewinds so far in this run
    max_rewinds: int
    skipped: list[int]  # iterations whose batches are drawn and left out


@dataclass(frozen=True)
class Stalled(Event):
    """No iteration finished for stall_factor × the median step time (a hung collective, a stuck data path)."""

    iter: int  # the last iteration that finished
    seconds: float  # since it finished
    median_ms: float  # the median step time the threshold is measured against
    threshold_s: float


@dataclass(frozen=True)
class Diverging(Event):
    """The loss trended up over the last ``window`` iterations."""

    iter: int
    window: int
    loss_before: float  # median loss of the window's first quarter
    loss_now: float  # median loss of its last quarter


@dataclass(frozen=True)
class HistoryLoaded(Event):
    """Iterations and evals of earlier sessions, read back from metrics.jsonl (thinned), oldest first."""

    events: list[Event]
    # (time, elapsed_before) of each session start among them (elapsed_before None in older records): where the
    # run's elapsed time picks up after a gap between sessions
    sessions: tuple[tuple[float, float | None], ...] = ()


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

    A subscriber that raises cannot stop training: it is unsubscribed, and its error is published once, as an
    error Notice, to the others (a sink on a full disk would otherwise fail, and say so, on every event).
    """

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Callable[[Event], None]) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            self._remove(subscriber)

        return unsubscribe

    def _remove(self, subscriber: Callable[[Event], None]) -> bool:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
                return True
            return False

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
            if not self._remove(subscriber):
                continue  # another thread removed and reported it
            name = getattr(subscriber, "__qualname__", None) or type(subscriber).__name__
            text = f"{type(exc).__name__}: {exc}"
            notice = Notice(level="error", message=f"event sink {name} failed and was detached: "
                                                   f"{text[:200]}")
            with self._lock:
                others = list(self._subscribers)
            for other in others:
                try:
                    other(notice)
                except Exception:
                    pass
