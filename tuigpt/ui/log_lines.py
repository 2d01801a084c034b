"""The events log's lines: what each run event reads as, in one place (live events and replayed history alike)."""

from __future__ import annotations

from rich.text import Text

from tuigpt.run import fmt
from tuigpt.run.events import (
    CheckpointWritten,
    Diverging,
    EvalIntervalChanged,
    EvalResult,
    Event,
    HistoryLoaded,
    IterationStats,
    NanDetected,
    Notice,
    Rewound,
    RunFailed,
    RunFinished,
    RunStarted,
    SampleGenerated,
    Stalled,
)

Line = tuple["str | Text", str]  # (text, level: info, warning, error, user, good, dim)
REPLAYED = 30  # earlier events shown in the log when a run's history is loaded


def lines_for(event: Event) -> list[Line]:
    """The log lines of one event (none for events the log does not show)."""
    if isinstance(event, RunStarted):
        what = f"resumed {event.run_name} at iter {event.start_iter:,}" if event.resumed else f"started {event.run_name}"
        return [(f"{what}: {event.max_iters:,} iters, eval every {event.eval_interval:,}, run dir {event.run_dir}",
                 "info"),
                (f"{event.device} {event.dtype} ({event.dtype_reason}) · {event.compile_text}", "dim")]
    if isinstance(event, EvalResult):
        line = Text(f"eval @{event.iter:,}: train {event.train_loss:.4f} · val {event.val_loss:.4f}")
        if event.is_best:
            line.append("  ★ best", style="bold green")
        line.append(f"  ({fmt.duration(event.seconds)})", style="dim")
        return [(line, "info")]
    if isinstance(event, CheckpointWritten):
        # the time before the path: a long path wraps, the figure stays whole
        line = Text(f"checkpoint @{event.iter:,} ({event.reason}, {_took(event.seconds)}) → ", style="green")
        line.append(event.path, style="bold")
        return [(line, "info")]
    if isinstance(event, SampleGenerated):
        if event.timeline:
            return [(f"timeline sample @{event.iter:,} ({_took(event.seconds)}): [ and ] browse the timeline", "dim")]
        return [(f"sample @{event.iter:,} ({_took(event.seconds)}), see the sample pane", "info")]
    if isinstance(event, NanDetected):
        report = fmt.nan_report(event)
        return [(report[0], "error")] + [(line, "warning") for line in report[1:]]
    if isinstance(event, Rewound):
        return [(fmt.rewound(event), "warning")]
    if isinstance(event, Stalled):
        return [(fmt.stalled(event), "warning")]
    if isinstance(event, Diverging):
        return [(fmt.diverging(event), "warning")]
    if isinstance(event, EvalIntervalChanged):
        return [(f"eval interval now {event.eval_interval:,} (next eval at {event.next_eval_iter:,})", "info")]
    if isinstance(event, Notice):
        return [(f"{event.level}: {event.message}" if event.level != "info" else event.message, event.level)]
    if isinstance(event, HistoryLoaded):
        return _history(event)
    if isinstance(event, RunFailed):
        lines: list[Line] = [(f"RUN FAILED at iter {event.iter:,}: {event.message}", "error")]
        lines += [(line, "error") for line in event.traceback.rstrip().splitlines()[-12:]]
        return lines + [(f"last checkpoint: {event.last_checkpoint or 'none'}", "error")]
    if isinstance(event, RunFinished):
        return _summary(event)
    return []


def _history(event: HistoryLoaded) -> list[Line]:
    iters = sum(1 for e in event.events if isinstance(e, IterationStats))
    evals = sum(1 for e in event.events if isinstance(e, EvalResult))
    loggable = [e for e in event.events if isinstance(e, (Notice, CheckpointWritten, EvalResult, NanDetected, Rewound,
                                                          Stalled, Diverging))][-REPLAYED:]
    lines: list[Line] = [(f"earlier history: {iters:,} logged iterations, {evals:,} evals; the last "
                          f"{len(loggable)} events:", "dim")]
    for e in loggable:
        lines += lines_for(e)
    return lines


def _summary(done: RunFinished) -> list[Line]:
    head = {"done": "run finished", "stopped": "run stopped", "nan": "run stopped on a NaN/Inf loss or gradient",
            "disk": "run stopped: a checkpoint could not be written"}.get(done.reason, f"run ended ({done.reason})")
    line = Text(f"{head} at iter {done.iter:,}: ", style="bold green" if done.reason in ("done", "stopped") else
                "bold red")
    if done.best_val_loss is not None:
        line.append(f"best val {done.best_val_loss:.4f}, ")
    if done.last_val_loss is not None:
        line.append(f"last val {done.last_val_loss:.4f}, ")
    line.append(f"{done.tokens_seen:,} tokens")
    return [
        (line, "info"),
        (f"time: {fmt.duration(done.wall_seconds)} wall = {fmt.duration(done.train_seconds)} train + "
         f"{fmt.duration(done.eval_seconds)} eval + {fmt.duration(done.checkpoint_seconds)} checkpoints", "info"),
        (f"last checkpoint: {done.last_checkpoint or 'none'}   (q quits)", "good" if done.last_checkpoint else "warning"),
    ]


def _took(seconds: float) -> str:
    """How long a checkpoint or sample took: "12.3 ms", "1.24 s"."""
    return fmt.ms(seconds * 1000.0)
