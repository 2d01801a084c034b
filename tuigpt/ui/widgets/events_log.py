"""A timestamped log of what happened: evals, checkpoints, notices, states, the user's actions."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.widgets import RichLog

from tuigpt.run.fmt import hms

LEVEL_STYLES = {"info": "", "warning": "bold yellow", "error": "bold red", "user": "bold cyan", "good": "green", "dim": "dim"}


class EventsLog(RichLog):
    """Bounded (max_lines): an overnight run does not grow it without limit."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=2000, wrap=True, markup=False, highlight=False, min_width=20, id=id, classes=classes)
        self.messages: deque[str] = deque(maxlen=2000)
        """The lines written, as plain text and unwrapped (for tests and copying)."""

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
        self.write(line)
