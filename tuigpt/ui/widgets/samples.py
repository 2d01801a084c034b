"""Generated samples: the newest first, with a short history to scroll back through (iteration, prompt, text); the
run model keeps the last ones (``RunSnapshot.samples``).

Focus it (``n`` or Tab) and ↑/↓, PgUp/PgDn, Home/End scroll; a new sample scrolls back to the top only when the
reader was already there.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

from tuigpt.run.events import SampleGenerated
from tuigpt.ui.isolation import guarded


def prompt_label(prompt: str) -> str:
    """A prompt as one short line: newlines shown as ⏎, long ones cut."""
    shown = prompt.replace("\n", "⏎")
    return shown if len(shown) <= 24 else shown[:23] + "…"


class SamplesPane(VerticalScroll):
    samples: reactive[tuple[SampleGenerated, ...]] = reactive(())
    """The samples to show, oldest first."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._text = Static(Text("no sample yet (press s)", style="dim"), id="sample-text")

    def compose(self) -> ComposeResult:
        yield self._text

    def on_mount(self) -> None:
        self.border_title = "sample"

    @guarded()
    def watch_samples(self) -> None:
        if not self.samples:
            return
        newest = self.samples[-1]
        older = f" · {len(self.samples) - 1} older below" if len(self.samples) > 1 else ""
        self.border_title = f"sample @ iter {newest.iter:,} ({newest.seconds:.1f} s){older}"
        text = Text()
        for k, sample in enumerate(reversed(self.samples)):
            if k:
                text.append("\n\n")
                text.append(f"── @ iter {sample.iter:,} · prompt {prompt_label(sample.prompt)} ──\n", style="bold dim")
            text.append(sample.text.strip("\n") or "(empty)")
        at_top = self.scroll_y <= 0
        self._text.update(text)
        if at_top and self.is_mounted:
            self.scroll_home(animate=False)

    def show_failure(self, text: Text) -> None:
        self._text.update(text)
