"""The latest generated sample and the iteration it came from."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tuigpt.run.events import SampleGenerated


class SamplesPane(VerticalScroll):
    def compose(self) -> ComposeResult:
        self._text = Static(Text("no sample yet (press s)", style="dim"), id="sample-text")
        yield self._text

    _sample: SampleGenerated | None = None
    _ready = False

    def on_mount(self) -> None:
        self.border_title = "sample"
        self._ready = True
        if self._sample is not None:
            self.show(self._sample)

    def show(self, sample: SampleGenerated) -> None:
        self._sample = sample
        if not self._ready:
            return  # drawn on mount
        self.border_title = f"sample @ iter {sample.iter:,} ({sample.seconds:.1f} s)"
        self._text.update(Text(sample.text.strip("\n") or "(empty)"))
        self.scroll_home(animate=False)
