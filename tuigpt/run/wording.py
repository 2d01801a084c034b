"""What each run event reads as: one table, used by the monitor's events log and by the headless lines.

The words are the same in both: the headless line is the plain text of a :class:`Line`; the events log puts the
time in front of it and styles it by its ``level`` and ``marks``. A line that only makes sense in one of them
says so in ``shown``: the headless lines print a sample's text and the iteration lines (the monitor has a pane
and a chart for those), the events log shows a failure's traceback (headless, it is in train.log) and a resumed
run's earlier history.

:meth:`tuigpt.run.model.RunModel.record` words each event as it folds it, with the run's context at that moment
(``Context``), so every front end words it alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tuigpt.run import fmt, plan
from tuigpt.run.events import (
    CheckpointWritten,
    Diverging,
    EndReason,
    EvalIntervalChanged,
    EvalProgress,
    EvalResult,
    Event,
    HistoryLoaded,
    IterationStats,
    NanDetected,
    Notice,
    PlanUpdated,
    Rewound,
    RunFailed,
    RunFinished,
    RunStarted,
    RunState,
    SampleGenerated,
    Stalled,
    StateChanged,
)

BOTH, LOG, PLAIN = "both", "log", "plain"  # where a line is shown: everywhere, the events log only, headless only
REPLAYED = 30  # earlier events the events log shows when a run's history is loaded
TRACEBACK_LINES = 12  # the last lines of a failure's traceback in the events log

# the closing line's first words, one per way a run ends
ENDINGS: dict[EndReason, str] = {
    EndReason.DONE: "done",
    EndReason.STOPPED: "stopped",
    EndReason.NAN: "stopped on a NaN/Inf loss or gradient",
    EndReason.DISK: "stopped: a checkpoint could not be written",
}


# why a plan was made again, as its line says it
PLAN_REASONS = {"start": "steps timed", "eval": "at the eval", "speed": "the speed changed", "pause": "paused",
                "resume": "after the pause", "cooldown": "the cooldown begins", "cap": "max_iters comes first"}


@dataclass(frozen=True)
class Line:
    """One line about an event: its words, how much it matters, and where it is shown."""

    text: str
    level: str = "info"  # info, warning, error, good, dim (the events log's styles)
    shown: str = BOTH
    marks: tuple[tuple[str, str], ...] = ()  # (part of the text, style) the events log emphasises
    time: float | None = None  # when it happened, where that is not the event's own time (a history's events)


@dataclass(frozen=True)
class Context:
    """What the words of an event need from the run around it, as it was when the event was folded."""

    max_iters: int = 0
    log_interval: int = 10
    eta: Any = None  # iteration lines: the time left (run/numbers.py Eta)
    settled: RunState = RunState.STARTING  # the last state that was not a busy one (eval, checkpoint, sample)
    evals_seen: int = 0  # eval results before this event
    target: str = ""  # eval lines: where the loss reaches the run's target ("" without one)
    untrained: bool = False  # an eval's progress: it is the untrained model's (run/model.py untrained)


def lines_for(event: Event, ctx: Context = Context()) -> list[Line]:
    """The lines of one event (none for events that are not worded: telemetry, cluster timings)."""
    if isinstance(event, IterationStats):
        return _iteration(event, ctx)
    if isinstance(event, RunStarted):
        what = "resuming" if event.resumed else "training"
        ends = plan.start_text(event.end_kind, event.end_text, event.deadline, event.max_iters, event.time)
        iters = f"iter {event.start_iter} | {ends}" if ends else f"iter {event.start_iter}/{event.max_iters}"
        return [Line(f"tuigpt {what} {event.run_name} | {event.n_params / 1e6:.2f}M params | {event.device}, "
                     f"{event.dtype} ({event.dtype_reason}) | {event.compile_text} | {iters} | "
                     f"{fmt.count(event.tokens_per_iter)} tokens/iter | MFU against {event.peak_label} | "
                     f"{event.run_dir}")]
    if isinstance(event, PlanUpdated):
        return [Line(f"plan ({PLAN_REASONS.get(event.reason, event.reason)}): {plan.describe(event, event.time)}",
                     "dim" if event.reason in ("eval", "speed") else "info")]
    if isinstance(event, EvalProgress):
        what = " (the untrained model)" if ctx.untrained else ""
        return [Line(f"eval iter {event.iter}{what} | evaluating {event.done}/{event.total} batches | "
                     f"{fmt.duration(event.seconds)}", shown=PLAIN)]
    if isinstance(event, EvalResult):
        best = " (best)" if event.is_best else f" (best {event.best_val_loss:.4f})"
        target = f" | {ctx.target}" if ctx.target else ""
        return [Line(f"eval iter {event.iter} | train loss {_loss(event.train_loss, event.train_bpb)} | val loss "
                     f"{_loss(event.val_loss, event.val_bpb)}{best} | {event.seconds:.1f}s{target}",
                     marks=(("(best)", "bold green"),))]
    if isinstance(event, CheckpointWritten):
        meanwhile = "" if event.waited is None else f" in the background; training waited {event.waited:.2f}s"
        return [Line(f"checkpoint {event.path} (iter {event.iter}, {event.reason}, {event.seconds:.2f}s{meanwhile})",
                     "good", marks=((event.path, "bold"),))]
    if isinstance(event, SampleGenerated):
        what = "timeline sample" if event.timeline else "sample"
        prompt = event.prompt if event.prompt.strip() else ""
        return [Line(f"{what} at iter {event.iter} ({fmt.ms(event.seconds * 1000.0)})", "dim" if event.timeline
                     else "info"),
                Line(f"{prompt}{event.text}\n--- end of sample", shown=PLAIN)]
    if isinstance(event, NanDetected):
        report = fmt.nan_report(event)
        return [Line(report[0], "error")] + [Line(line, "warning") for line in report[1:]]
    if isinstance(event, Rewound):
        return [Line(fmt.rewound(event), "warning")]
    if isinstance(event, Stalled):
        return [Line(f"warning: {fmt.stalled(event)}", "warning")]
    if isinstance(event, Diverging):
        return [Line(f"warning: {fmt.diverging(event)}", "warning")]
    if isinstance(event, EvalIntervalChanged):
        return [Line(f"eval interval now {event.eval_interval:,} (next eval at iter {event.next_eval_iter:,})")]
    if isinstance(event, Notice):
        return [Line(f"{event.level}: {event.message}", event.level)]
    if isinstance(event, StateChanged):
        if event.state == RunState.PAUSED and ctx.settled != RunState.PAUSED:
            return [Line(f"paused at iter {event.iter}", "warning")]
        if event.state == RunState.RUNNING and ctx.settled == RunState.PAUSED:
            return [Line(f"resumed at iter {event.iter}")]
        return []
    if isinstance(event, RunFinished):
        best = f"{event.best_val_loss:.4f}" if event.best_val_loss is not None else "n/a"
        ok = event.reason in (EndReason.DONE, EndReason.STOPPED)
        # every time is the run's over its sessions (RunFinished); after a resume, this session's is said apart
        session = event.session_seconds
        this = f"; this session {fmt.duration(session)}" if session is not None and \
            event.wall_seconds - session >= 1.0 else ""
        return [Line(f"{ENDINGS[event.reason]} at iter {event.iter} in {fmt.duration(event.wall_seconds)} (train "
                     f"{fmt.duration(event.train_seconds)}, eval {fmt.duration(event.eval_seconds)}, checkpoints "
                     f"{fmt.duration(event.checkpoint_seconds)}{this}) | best val loss {best} | checkpoint "
                     f"{event.last_checkpoint or 'none written'}{_how_to_go_on(event)}", "good" if ok else "error")]
    if isinstance(event, RunFailed):
        when = time.strftime("%H:%M:%S", time.localtime(event.time))
        lines = [Line(f"error at iter {event.iter}: {event.message} | last good checkpoint: "
                      f"{event.last_checkpoint or 'none'} | full traceback in the run's train.log ({when})", "error")]
        return lines + [Line(line, "error", LOG) for line in event.traceback.rstrip().splitlines()[-TRACEBACK_LINES:]]
    if isinstance(event, HistoryLoaded):
        return _history(event)
    return []


def _loss(loss: float, bpb: float | None) -> str:
    """An eval's loss with its bits per byte beside it (none in records written before them)."""
    return f"{loss:.4f}" + (f" · {bpb:.3f} bpb" if bpb is not None else "")


def _how_to_go_on(event: RunFinished) -> str:
    """A run stopped before its end (a key, a signal), with a checkpoint: how to continue it."""
    if event.reason != EndReason.STOPPED or not event.last_checkpoint:
        return ""
    return " (continue: the same command with --resume)"


def _iteration(e: IterationStats, ctx: Context) -> list[Line]:
    """A logged iteration's line (every log_interval, and the last one)."""
    if e.iter % max(1, ctx.log_interval) and e.iter != ctx.max_iters:
        return []
    grad = f" | {fmt.grad_norm(e.grad_norm, e.clip_rate)}" if e.grad_norm is not None else ""
    return [Line(f"iter {e.iter}/{ctx.max_iters} | loss {e.loss:.4f} | lr {e.lr:.2e}{grad} | {e.ms_per_iter:.1f} ms/it"
                 f" | {fmt.count(e.tokens_per_sec)} tok/s | MFU {fmt.mfu(e.mfu)} | ETA {fmt.eta(ctx.eta)}",
                 shown=PLAIN)]


def _history(event: HistoryLoaded) -> list[Line]:
    """A resumed or watched run's earlier sessions: how much there is, and its last few events."""
    iters = sum(1 for e in event.events if isinstance(e, IterationStats))
    evals = sum(1 for e in event.events if isinstance(e, EvalResult))
    loggable = [e for e in event.events if isinstance(e, (Notice, CheckpointWritten, EvalResult, NanDetected, Rewound,
                                                          Stalled, Diverging))][-REPLAYED:]
    first = loggable[0].time if loggable else None
    lines = [Line(f"earlier history: {iters:,} logged iterations, {evals:,} evals; the last {len(loggable)} events:",
                  "dim", LOG, time=first)]
    for e in loggable:  # each at the time it happened, not when the history was read
        lines += [Line(line.text, line.level, LOG, line.marks, e.time) for line in lines_for(e) if line.shown != PLAIN]
    return lines
