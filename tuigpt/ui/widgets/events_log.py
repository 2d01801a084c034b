"""A timestamped log of what happened: evals, checkpoints, notices, states (worded by the run model, the words of
the headless lines), the user's actions.

It follows the newest line unless the reader scrolled up (then new lines wait below until they scroll back to
the end, or press End), and it comes back to the newest line when a layout switch shows it again. Lines are
wrapped to the pane's width and wrapped again when that changes (a resize, a layout switch): a log written at
120 columns reads the same at 160 or 80, with no sideways scrolling.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.events import Resize
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
        self._entries: deque[Text] = deque(maxlen=2000)  # the lines as written, wrapped again on a width change
        self._wrapped_at = 0
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
        self._write(line)

    def _write(self, line: Text) -> None:
        self._entries.append(line)
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

    def action_scroll_end(self) -> None:
        """End: back to the newest line and following it, whatever a scroll still under way says."""
        self.following = True
        self.scroll_end(animate=False, x_axis=False)

    def action_scroll_home(self) -> None:
        self.scroll_home(animate=False, x_axis=False)

    def action_page_down(self) -> None:  # not animated: the place is settled before the next line arrives
        self.scroll_page_down(animate=False)

    def action_page_up(self) -> None:
        self.scroll_page_up(animate=False)

    def on_show(self) -> None:
        if self.following:  # shown again after a layout switch: the newest line, not the top
            self.call_after_refresh(self.scroll_end, animate=False)

    def on_resize(self, event: Resize) -> None:  # RichLog's own on_resize runs too (Textual calls each class's)
        width = self.scrollable_content_region.width
        if width and self._wrapped_at and width != self._wrapped_at:
            self._rewrap()
        self._wrapped_at = width or self._wrapped_at
        if self.following:
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)

    def _rewrap(self) -> None:
        """Every line again at the new width; a reader scrolled up keeps the same share of the log above."""
        share = self.scroll_y / self.max_scroll_y if self.max_scroll_y else 1.0
        following = self.following
        entries = list(self._entries)
        self.clear()
        self._entries.clear()
        for line in entries:
            self._entries.append(line)
            self.write(line, scroll_end=False)
        self.following = following
        if not following:
            self.call_after_refresh(lambda: self.scroll_to(y=round(share * self.max_scroll_y), animate=False))

    def show_failure(self, text: Text) -> None:
        self._write(text)
