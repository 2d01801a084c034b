"""Base of the telemetry panes: shows a sampler reading, or why it cannot, and never raises into the app."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


class ReadingPane(Static):
    """Subclasses set TITLE and implement ``describe(data) -> Text``; the pane has a fixed size."""

    TITLE = ""

    def on_mount(self) -> None:
        self.border_title = self.TITLE
        self.update(Text("no reading yet", style="dim"))

    def show(self, data: Any) -> None:
        try:
            self.update(self.describe(data), layout=False)  # fixed-size pane: no relayout
        except Exception as exc:  # a half-written or foreign reading must never take the UI down
            self.update(Text(f"{self.TITLE} reading unreadable: {exc!r}", style="yellow"))

    @staticmethod
    def describe(data: Any) -> Text:
        raise NotImplementedError
