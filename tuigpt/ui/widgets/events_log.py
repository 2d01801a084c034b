"""A timestamped log of what happened: evals, checkpoints, notices, states (worded by the run model, the words of
the headless lines), the user's actions.

It follows the newest line unless the reader scrolled up (then new lines wait below until they scroll back to
the end), and it comes back to the newest line when a layout switch shows it again.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.widgets import RichLog

from tuigpt.run.fmt import hms
from tuigpt.run.wording import PLAIN, Line

LEVEL_STYLES = {"info": "", "warning": "bold yellow", "error": "bold red", "user": "bold cyan", "good": "green", "dim": "dim"}


class EventsLog(RichLog):
    """Bounded (max_lines): an overnight run does not grow it without limit."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=2000, wrap=True, markup=False, highlight=False, min_width=20, auto_scroll=False,
                         id=id, classes=classes)
        self.messages: deque[str] = deque(maxlen=2000)
        """The lines written, as plain text and unwrapped (for tests and copying)."""
        self.following = True
        """Whether new lines scroll into view (False once the reader scrolled up)."""

    def on_mount(self) -> None:
        self.border_title = "events"

    def add(self, when: float, message: str | Text, level: str = "info") -> None:
        line = Text()
        line.append(hms(when) + " ", style="dim")  # a span: Text(style=...) would dim the whole line
        if isinstance(message, Text):
            line.append_text(message)
        else:
            line.append(message, style=LEVEL_STYLES.get(level, ""))
        self.messages.append(line.plain)
        self.write(line, scroll_end=self.following)

    def add_line(self, when: float, line: Line) -> None:
        """One of the run model's lines (not those meant for the headless output alone), at the time it happened
        (a history's line carries its own: `watch` opened later)."""
        if line.shown == PLAIN:
            return
        text = Text(line.text, style=LEVEL_STYLES.get(line.level, ""))
        for part, style in line.marks:
            text.highlight_words([part], style)
        self.add(line.time if line.time is not None else when, text, line.level)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self.size.height and self.virtual_size.height > self.size.height:
            self.following = new >= self.max_scroll_y - 0.5  # scrolled up: stop following; back at the end: follow

    def on_show(self) -> None:
        if self.following:  # shown again after a layout switch: the newest line, not the top
            self.call_after_refresh(self.scroll_end, animate=False)

    def on_resize(self) -> None:
        if self.following:
            self.call_after_refresh(self.scroll_end, animate=False)

    def show_failure(self, text: Text) -> None:
        self.write(text, scroll_end=self.following)
