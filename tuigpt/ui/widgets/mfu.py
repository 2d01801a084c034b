"""MFU now and averaged, always with the peak it is measured against."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tuigpt.ui.history import HistoryView
from tuigpt.run.fmt import NA, bar, percent


class MfuPane(Static):
    def on_mount(self) -> None:
        self.border_title = "MFU"
        self.update(Text("MFU n/a (waiting for the run)", style="dim"))

    def show(self, view: HistoryView, peak_flops: float | None, peak_label: str) -> None:
        text = Text()
        if not peak_flops:
            text.append("MFU n/a (no peak known)", style="bold")
            if peak_label:
                text.append(f"\n{peak_label}", style="dim")
            self.update(text)
            return
        now = view.last.mfu if view.last is not None else None
        text.append(bar(now, 12), style="green")
        text.append(f" {percent(now)} now\n", style="bold")
        text.append("avg ", style="bold")
        text.append(percent(view.mfu_avg) if view.mfu_avg is not None else NA)
        text.append(f"\nof {peak_label}", style="dim")
        self.update(text, layout=False)  # fixed-size pane: no relayout on every redraw
