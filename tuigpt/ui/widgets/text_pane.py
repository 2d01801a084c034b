"""The base of the panes that show one block of text (MFU, CPU, GPU, cluster): a failure replaces the text until
the pane draws again, and the layout is redone only when the number of lines changed (the panes are sized by
their content and redraw every second)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class TextPane(Static):
    _shown_lines = -1

    def show_text(self, text: Text) -> None:
        lines = text.plain.count("\n")
        self.update(text, layout=lines != self._shown_lines)
        self._shown_lines = lines

    def show_failure(self, text: Text) -> None:
        self.show_text(text)
