"""The headless front end: plain log lines for nohup, CI, pipes and `--headless`."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

from tuigpt.run import fmt, plan
from tuigpt.run.alerts import alert_for, terminal_bytes
from tuigpt.run.events import (
    CheckpointWritten,
    Diverging,
    EvalIntervalChanged,
    EvalProgress,
    EvalResult,
    Event,
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
from tuigpt.run.numbers import RunProgress
from tuigpt.run.projection import TargetTracker, describe

ALERT_MARK = "!!! ALERT"  # headless alert lines start with this: grep for it, or point a log watcher at it
EVAL_QUIET = 2.0  # an eval shorter than this prints only its result
EVAL_EVERY = 10.0  # a long eval prints its progress this often
PLAN_REASONS = {"start": "steps timed", "eval": "at the eval", "speed": "the speed changed", "pause": "paused",
                "resume": "after the pause", "cooldown": "the cooldown begins", "cap": "max_iters comes first"}
ENDINGS = {"done": "done", "stopped": "stopped", "nan": "stopped on a NaN/Inf loss or gradient",
           "disk": "stopped: a checkpoint could not be written"}


class HeadlessPrinter:
    """Prints one line per log_interval iterations, each eval, checkpoint, notice, and a closing summary; alerts
    (when the run's config has ``alerts``) as a marked line, with the bell and a desktop notification when
    the output is a terminal."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()
        self.progress = RunProgress()  # the same speed and ETA as the monitor's
        self._log_interval = 10
        self._state = RunState.STARTING
        self._alerts = False  # until a RunStarted says so (the closing line printed after the monitor alerts not)
        self.tracker = TargetTracker()  # the target_loss projection, on eval lines
        self._target: float | None = None
        self._run_name = ""
        self._evals_seen = 0
        self._eval_printed: tuple[int, float] | None = None  # (iteration, seconds) of the last progress line

    def _print(self, line: str) -> None:
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def __call__(self, event: Event) -> None:
        self.progress.observe(event)
        self.tracker.observe(event)
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is not None:
            handler(event)
        if self._alerts and (alert := alert_for(event, self._run_name)) is not None:
            ring = terminal_bytes(alert, os.environ) if self.out.isatty() else ""
            self._print(f"{ring}{ALERT_MARK} [{alert.kind}] {alert.summary}")

    def _on_RunStarted(self, e: RunStarted) -> None:
        self._log_interval = int(e.config.get("log_interval", 10))
        self._alerts, self._run_name = bool(e.config.get("alerts", True)), e.run_name
        self._target = e.config.get("target_loss")
        what = "resuming" if e.resumed else "training"
        ends = plan.start_text(e.end_kind, e.end_text, e.deadline, e.max_iters, e.time)
        iters = f"iter {e.start_iter}/{e.max_iters}" if not ends else f"iter {e.start_iter} | {ends}"
        self._print(f"tuigpt {what} {e.run_name} | {e.n_params / 1e6:.2f}M params | {e.device}, {e.dtype} "
                    f"({e.dtype_reason}) | {e.compile_text} | {iters} | "
                    f"{fmt.count(e.tokens_per_iter)} tokens/iter | MFU against {e.peak_label} | {e.run_dir}")

    def _on_PlanUpdated(self, e: PlanUpdated) -> None:
        self._print(f"plan ({PLAN_REASONS.get(e.reason, e.reason)}): {plan.describe(e, e.time)}")

    def _on_IterationStats(self, e: IterationStats) -> None:
        if e.iter % self._log_interval and e.iter != self.progress.max_iters:
            return
        mfu = f"MFU {fmt.mfu(e.mfu)}"
        grad = f" | {fmt.grad_norm(e.grad_norm, e.clip_rate)}" if e.grad_norm is not None else ""
        self._print(f"iter {e.iter}/{self.progress.max_iters} | loss {e.loss:.4f} | lr {e.lr:.2e}{grad} | "
                    f"{e.ms_per_iter:.1f} ms/it | {fmt.count(e.tokens_per_sec)} tok/s | {mfu} | "
                    f"ETA {fmt.duration(self.progress.eta_seconds())}")

    def _on_EvalProgress(self, e: EvalProgress) -> None:
        """The run's first eval says what it does at once (it can take tens of seconds); a later one once it has
        taken EVAL_QUIET seconds; then every EVAL_EVERY seconds."""
        last = self._eval_printed if self._eval_printed is not None and self._eval_printed[0] == e.iter else None
        if last is None and e.seconds < EVAL_QUIET and self._evals_seen:
            return
        if last is not None and e.seconds - last[1] < EVAL_EVERY:
            return
        self._eval_printed = (e.iter, e.seconds)
        what = " (the untrained model)" if not self._evals_seen and e.iter == 0 else ""
        self._print(f"eval iter {e.iter}{what} | evaluating {e.done}/{e.total} batches | {fmt.duration(e.seconds)}")

    def _on_EvalResult(self, e: EvalResult) -> None:
        self._evals_seen += 1
        self._eval_printed = None
        best = " (best)" if e.is_best else f" (best {e.best_val_loss:.4f})"
        target = f" | {describe(self.tracker, self.progress, self._target, e.time)}" if self._target else ""
        self._print(f"eval iter {e.iter} | train loss {e.train_loss:.4f} | val loss {e.val_loss:.4f}{best} | "
                    f"{e.seconds:.1f}s{target}")

    def _on_CheckpointWritten(self, e: CheckpointWritten) -> None:
        self._print(f"checkpoint {e.path} (iter {e.iter}, {e.reason}, {e.seconds:.2f}s)")

    def _on_SampleGenerated(self, e: SampleGenerated) -> None:
        self._print(f"sample at iter {e.iter}:\n{e.prompt if e.prompt.strip() else ''}{e.text}\n--- end of sample")

    def _on_NanDetected(self, e: NanDetected) -> None:
        self._print("\n".join(fmt.nan_report(e)))

    def _on_Rewound(self, e: Rewound) -> None:
        self._print(fmt.rewound(e))

    def _on_Stalled(self, e: Stalled) -> None:
        self._print(f"warning: {fmt.stalled(e)}")

    def _on_Diverging(self, e: Diverging) -> None:
        self._print(f"warning: {fmt.diverging(e)}")

    def _on_Notice(self, e: Notice) -> None:
        self._print(f"{e.level}: {e.message}")

    def _on_EvalIntervalChanged(self, e: EvalIntervalChanged) -> None:
        self._print(f"eval interval now {e.eval_interval} (next eval at iter {e.next_eval_iter})")

    def _on_StateChanged(self, e: StateChanged) -> None:
        previous, self._state = self._state, e.state
        if e.state == RunState.PAUSED:
            self._print(f"paused at iter {e.iter}")
        elif previous == RunState.PAUSED and e.state == RunState.RUNNING:
            self._print(f"resumed at iter {e.iter}")

    def _on_RunFinished(self, e: RunFinished) -> None:
        best = f"{e.best_val_loss:.4f}" if e.best_val_loss is not None else "n/a"
        where = e.last_checkpoint or "none written"
        self._print(f"{ENDINGS.get(e.reason, e.reason)} at iter {e.iter} in {fmt.duration(e.wall_seconds)} (train "
                    f"{fmt.duration(e.train_seconds)}, eval {fmt.duration(e.eval_seconds)}, checkpoints "
                    f"{fmt.duration(e.checkpoint_seconds)}) | best val loss {best} | checkpoint {where}")

    def _on_RunFailed(self, e: RunFailed) -> None:
        where = e.last_checkpoint or "none"
        self._print(f"error at iter {e.iter}: {e.message} | last good checkpoint: {where} | "
                    f"full traceback in the run's train.log ({time.strftime('%H:%M:%S', time.localtime(e.time))})")
