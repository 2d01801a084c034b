"""MFU now and averaged, always with the peak it is measured against."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tuigpt.ui.history import HistoryView
from tuigpt.run.fmt import STALE_PEAK, bar, mfu
from tuigpt.run.numbers import mfu_plausible


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
        text.append(f" {mfu(now, short=True)} now\n", style="bold")
        text.append("avg ", style="bold")
        text.append(mfu(view.mfu_avg, short=True))
        text.append(f"\nof {peak_label}", style="dim")
        if not (mfu_plausible(now) and mfu_plausible(view.mfu_avg)):  # over 100%: never shown as if true
            text.append(f"\n?! {STALE_PEAK}", style="bold red")
        self.update(text, layout=False)  # fixed-size pane: no relayout on every redraw
