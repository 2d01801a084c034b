"""A red banner, shown only when the run failed: the error and the checkpoint to resume from."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tuigpt.run.events import RunFailed


class FailureBanner(Static):
    """Hidden until :meth:`show_failure`."""

    DEFAULT_CSS = """
    FailureBanner { display: none; height: auto; max-height: 5; }
    FailureBanner.-shown { display: block; }
    """

    def show_failure(self, failed: RunFailed) -> None:
        text = Text()
        text.append(" RUN FAILED ", style="bold bright_white on red")
        text.append(f" at iter {failed.iter:,}: ", style="bold")
        text.append(failed.message)
        text.append("\nlast checkpoint: ", style="bold")
        text.append(failed.last_checkpoint or "none written", style="bold" if failed.last_checkpoint else "italic")
        text.append("  · traceback in the events log · q quits", style="dim")
        self.update(text)
        self.add_class("-shown")
