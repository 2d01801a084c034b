"""Speed: ms/iter sparkline, tokens/s now and average, time spent in evals and checkpoints."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from tuigpt.run.numbers import WARMUP_ITERS
from tuigpt.ui.history import HistoryView
from tuigpt.run.fmt import NA, count, duration


class SpeedPane(Vertical):
    DEFAULT_CSS = """
    SpeedPane Sparkline { height: 2; margin: 0 0 0 0; }
    SpeedPane Static { height: auto; }
    """

    def compose(self) -> ComposeResult:
        self._spark = Sparkline([], summary_function=max, id="ms-spark")
        self._text = Static(NA, id="speed-text")
        yield self._spark
        yield self._text

    _view: HistoryView | None = None
    _ready = False

    def on_mount(self) -> None:
        self.border_title = "speed"
        self._ready = True
        if self._view is not None:
            self.show(self._view)

    def show(self, view: HistoryView) -> None:
        self._view = view
        if not self._ready:
            return  # drawn on mount
        self._spark.data = view.ms_recent
        last = view.last
        text = Text()
        ms = view.ms_per_iter
        text.append("ms/iter ", style="bold")
        text.append(NA if last is None else f"{last.ms_per_iter:,.1f}")
        text.append(f"  (median {ms:,.1f})\n" if ms is not None else "\n", style="dim")
        text.append("tok/s   ", style="bold")
        text.append(NA if last is None else count(last.tokens_per_sec))
        text.append(" now · ")
        text.append(count(view.tokens_per_sec_avg) if view.tokens_per_sec_avg is not None else NA)
        text.append(" avg\n")
        text.append(f"        (avg skips {WARMUP_ITERS} warm-up iters)\n", style="dim")
        text.append("evals   ", style="bold")
        text.append(f"{duration(view.eval_seconds)} ({view.n_evals})")
        text.append(" · ckpt ", style="bold")
        text.append(duration(view.checkpoint_seconds))
        self._text.update(text)
