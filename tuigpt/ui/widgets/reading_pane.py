"""Base of the telemetry panes: shows a sampler reading, or why it cannot, and never raises into the app.

The full reasons of the reading's n/a fields become the pane's tooltip (and the ``?`` help lists them).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tuigpt.ui.widgets.text_pane import TextPane


def get(obj: Any, name: str) -> Any:
    """A reading's field, None when it is missing (a reading from another tuigpt version)."""
    return getattr(obj, name, None)


class ReadingPane(TextPane):
    """Subclasses set TITLE and implement ``describe(data) -> Text`` (and ``reasons(data)``)."""

    TITLE = ""
    reasons_shown: dict[str, str] = {}
    """The full reasons of the n/a fields of the reading shown (for the help screen)."""
    reading: Any = ()
    """The reading shown (the run model's newest; () before the first)."""

    def on_mount(self) -> None:
        self.border_title = self.TITLE
        self.update(Text("no reading yet", style="dim"))

    def show(self, data: Any) -> None:
        self.reading = data
        try:
            self.show_text(self.describe(data))
            self.reasons_shown = self.reasons(data)
        except Exception as exc:  # a half-written or foreign reading must never take the UI down
            self.show_text(Text(f"{self.TITLE} reading unreadable: {exc!r}", style="yellow"))
            self.reasons_shown = {}
        self.tooltip = "\n".join(f"{k}: {v}" for k, v in self.reasons_shown.items()) or None

    @staticmethod
    def describe(data: Any) -> Text:
        raise NotImplementedError

    @staticmethod
    def reasons(data: Any) -> dict[str, str]:
        return {}
