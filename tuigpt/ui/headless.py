"""The headless front end: plain log lines for nohup, CI, pipes and `--headless`."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from tuigpt.run import fmt
from tuigpt.run.events import (CheckpointWritten, EvalIntervalChanged, EvalResult, Event, IterationStats, Notice,
                               RunFailed, RunFinished, RunStarted, RunState, SampleGenerated, StateChanged)
from tuigpt.run.numbers import RunProgress

ENDINGS = {"done": "done", "stopped": "stopped", "nan": "stopped on a NaN/Inf loss",
           "disk": "stopped: a checkpoint could not be written"}


class HeadlessPrinter:
    """Prints one line per log_interval iterations, each eval, checkpoint, notice, and a closing summary."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()
        self.progress = RunProgress()  # the same speed and ETA as the monitor's
        self._log_interval = 10
        self._state = RunState.STARTING

    def _print(self, line: str) -> None:
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def __call__(self, event: Event) -> None:
        self.progress.observe(event)
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is not None:
            handler(event)

    def _on_RunStarted(self, e: RunStarted) -> None:
        self._log_interval = int(e.config.get("log_interval", 10))
        what = "resuming" if e.resumed else "training"
        self._print(f"tuigpt {what} {e.run_name} | {e.n_params / 1e6:.2f}M params | {e.device}, {e.dtype} "
                    f"({e.dtype_reason}) | {e.compile_text} | iter {e.start_iter}/{e.max_iters} | "
                    f"{fmt.count(e.tokens_per_iter)} tokens/iter | MFU against {e.peak_label} | {e.run_dir}")

    def _on_IterationStats(self, e: IterationStats) -> None:
        if e.iter % self._log_interval and e.iter != self.progress.max_iters:
            return
        mfu = f"MFU {fmt.mfu(e.mfu)}"
        self._print(f"iter {e.iter}/{self.progress.max_iters} | loss {e.loss:.4f} | lr {e.lr:.2e} | "
                    f"{e.ms_per_iter:.1f} ms/it | {fmt.count(e.tokens_per_sec)} tok/s | {mfu} | "
                    f"ETA {fmt.duration(self.progress.eta_seconds())}")

    def _on_EvalResult(self, e: EvalResult) -> None:
        best = " (best)" if e.is_best else f" (best {e.best_val_loss:.4f})"
        self._print(f"eval iter {e.iter} | train loss {e.train_loss:.4f} | val loss {e.val_loss:.4f}{best} | "
                    f"{e.seconds:.1f}s")

    def _on_CheckpointWritten(self, e: CheckpointWritten) -> None:
        self._print(f"checkpoint {e.path} (iter {e.iter}, {e.reason}, {e.seconds:.2f}s)")

    def _on_SampleGenerated(self, e: SampleGenerated) -> None:
        self._print(f"sample at iter {e.iter}:\n{e.prompt if e.prompt.strip() else ''}{e.text}\n--- end of sample")

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
