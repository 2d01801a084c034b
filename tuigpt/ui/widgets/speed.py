"""Speed: ms/iter sparkline with its scale, ms/iter now and its median, tokens/s now and average, time in evals
and checkpoints.

The sparkline is the last SPEED_WINDOW steps' ms/iter, two rows (16 levels), the slowest step of each column
drawn (one slow step is what it should show), between the window's fastest and slowest step, which it says.

ms/iter is one optimizer step's wall time on this process (rank 0 of several), the device synchronised; the
median is of the last SPEED_WINDOW steps without the warm-up ones (run/numbers.py), so one slow step moves
nothing. The Cluster pane's ms/it are means per rank, which a slow step does move: its footnote says so.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Static

from tuigpt.run.fmt import NA, count, duration
from tuigpt.run.model import Progress
from tuigpt.run.numbers import SPEED_WINDOW, WARMUP_ITERS
from tuigpt.ui.isolation import guarded
from tuigpt.ui.sparkline import spark_rows

LABEL = 9
SPARK_ROWS = 2
SCALE = 10  # " max 1,234" beside the sparkline


class SpeedPane(Vertical):
    DEFAULT_CSS = """
    SpeedPane { height: auto; }
    SpeedPane Static { height: auto; }
    """

    progress: reactive[Progress | None] = reactive(None, always_update=True)
    """What the pane shows (a snapshot's Progress)."""
    ranks = reactive(1)
    """Processes of the run (from the cluster timings): with several, this pane is rank 0's."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._spark = Static("", id="ms-spark")
        self._text = Static(NA, id="speed-text")

    def compose(self) -> ComposeResult:
        yield self._spark
        yield self._text

    def on_mount(self) -> None:
        self.border_title = f"speed · last {SPEED_WINDOW} steps"

    def watch_progress(self) -> None:
        self._draw()

    def watch_ranks(self) -> None:
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    @guarded("speed")
    def _draw(self) -> None:
        view = self.progress
        if view is None:
            return
        self._spark.update(self._sparkline(view.ms_recent))
        last, ms = view.last, view.ms_per_iter
        text = Text()
        text.append(f"{'ms/iter':<{LABEL}}", style="bold")
        text.append(NA if last is None else f"{last.ms_per_iter:,.1f} now")
        if ms is not None:
            text.append(f" · median {ms:,.1f}")
        text.append(f"\n{'tok/s':<{LABEL}}", style="bold")
        text.append(NA if last is None else f"{count(last.tokens_per_sec)} now")
        text.append(f" · {count(view.tokens_per_sec_avg)} avg" if view.tokens_per_sec_avg is not None else "")
        text.append(f"\n{'evals':<{LABEL}}", style="bold")
        text.append(f"{duration(view.eval_seconds)} ({view.n_evals})")
        text.append(" · ckpt ", style="bold")
        text.append(duration(view.checkpoint_seconds))
        self._text.update(text)
        # what the sparkline and the median are over, and what the average leaves out, in the pane's borders
        who = "rank 0 · " if self.ranks > 1 else ""
        self.border_title = f"speed · {who}last {SPEED_WINDOW} steps"
        self.border_subtitle = f"avg skips {WARMUP_ITERS} warm-up iters"

    def _sparkline(self, ms: list[float]) -> Text:
        """The window's ms/iter, two rows tall, its slowest and fastest step beside it."""
        known = [v for v in ms if v is not None]
        text = Text(no_wrap=True, overflow="crop")
        if not known:
            return text
        width = max(8, self.content_size.width - SCALE)
        notes = [f" max {max(known):,.0f}", f" min {min(known):,.0f}"]
        for r, line in enumerate(spark_rows(known, width, SPARK_ROWS)):
            text.append(("\n" if r else "") + line, style="cyan")
            text.append(notes[r].ljust(SCALE) if r < len(notes) else "", style="dim")
        return text

    def show_failure(self, text: Text) -> None:
        self._text.update(text)
        # what the sparkline and the median are over, and what the average leaves out, in the pane's borders
        who = "rank 0 · " if self.ranks > 1 else ""
        self.border_title = f"speed · {who}last {SPEED_WINDOW} steps"
        self.border_subtitle = f"avg skips {WARMUP_ITERS} warm-up iters"
