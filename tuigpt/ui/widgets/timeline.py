"""The sample timeline (`sample_every_eval: true`): the sample of every eval, from the same prompt and seed, one
at a time — `[` goes to an older one, `]` to a newer one, so the text can be watched improving. It takes the
sample pane's place while browsed (`]` past the newest gives the pane back)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tuigpt.run.events import SampleGenerated
from tuigpt.ui.isolation import guarded


class SampleTimeline(VerticalScroll):
    """Shows timeline sample number ``index`` (0: the oldest) of the list it was given."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.samples: tuple[SampleGenerated, ...] = ()  # the run model's timeline, oldest first
        self.index: int | None = None  # None: follow the newest
        self._text = Static(Text("no timeline samples yet (sample_every_eval: true)", style="dim"), id="timeline-text")

    def compose(self) -> ComposeResult:
        yield self._text

    def on_mount(self) -> None:
        self.border_title = "sample timeline"
        self._draw()

    @guarded()
    def update_samples(self, samples: tuple[SampleGenerated, ...]) -> None:
        if samples != self.samples:
            self.samples = samples
            self._draw()

    def step(self, delta: int) -> bool:
        """Move ``delta`` samples (negative: older); False when stepping past the newest (leave the timeline)."""
        if not self.samples:
            return delta < 0
        current = len(self.samples) - 1 if self.index is None else self.index
        target = current + delta
        if target >= len(self.samples):
            self.index = None
            self._draw()
            return False
        self.index = max(0, target)
        self._draw()
        return True

    def show_failure(self, text: Text) -> None:
        self._text.update(text)

    @property
    def shown(self) -> SampleGenerated | None:
        if not self.samples:
            return None
        return self.samples[-1 if self.index is None else self.index]

    def _draw(self) -> None:
        sample = self.shown
        if sample is None or not self.is_mounted:
            return
        k = len(self.samples) if self.index is None else self.index + 1
        self.border_title = (f"sample timeline @ iter {sample.iter:,} ({k} of {len(self.samples)}) · [ older · "
                             f"] newer")
        self._text.update(Text(sample.text.strip("\n") or "(empty)"))
        self.scroll_home(animate=False)
