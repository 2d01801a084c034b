"""The `?` screen: every key and what it does, and why each n/a on screen is n/a (the full reasons)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    """Lists (key, what it does) pairs handed in by the app, then the telemetry's n/a reasons."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", key_display="?"),
        Binding("q", "dismiss", "Close"),
    ]

    AUTO_FOCUS = "#help-dialog"  # ↑/↓ scroll a long help on a small terminal

    def __init__(self, keys: Sequence[tuple[str, str]], reasons: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._keys = list(keys)
        self._reasons = dict(reasons or {})

    def compose(self) -> ComposeResult:
        width = max((len(key) for key, _ in self._keys), default=0)
        table = Text()
        for key, description in self._keys:
            table.append(f"{key:>{width}}", style="bold cyan")
            table.append(f"  {description}\n")
        table.rstrip()
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Static("Keys", classes="dialog-title")
            yield Static(table)
            if self._reasons:
                why = Text()
                for field, reason in self._reasons.items():
                    why.append(f"{field}: ", style="bold")
                    why.append(f"{reason}\n")
                why.rstrip()
                yield Static("Why n/a (from the latest telemetry reading)", classes="dialog-title help-why")
                yield Static(why)
            yield Static("escape, ? or q closes this help", classes="dialog-hint")

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
