"""The latest generated sample and the iteration it came from."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tuigpt.events import SampleGenerated


class SamplesPane(VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Static(Text("no sample yet (press s)", style="dim"), id="sample-text")

    def on_mount(self) -> None:
        self.border_title = "sample"

    def show(self, sample: SampleGenerated) -> None:
        self.border_title = f"sample @ iter {sample.iter:,} ({sample.seconds:.1f} s)"
        self.query_one("#sample-text", Static).update(Text(sample.text.strip("\n") or "(empty)"))
        self.scroll_home(animate=False)
