"""The quit dialog: save and quit (focused, so `q` then Enter saves), quit without saving, cancel."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

SAVE, NO_SAVE, CANCEL = "save", "nosave", "cancel"


class QuitDialog(ModalScreen[str]):
    """Dismisses with SAVE, NO_SAVE or CANCEL."""

    AUTO_FOCUS = "#save"
    BINDINGS = [
        Binding("escape", "choose('cancel')", "Cancel"),
        Binding("down,j", "app.focus_next", "Next", show=False),
        Binding("up,k", "app.focus_previous", "Previous", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog", classes="dialog"):
            yield Static("Stop the run and quit?", classes="dialog-title")
            yield Button("Save checkpoint and quit", id=SAVE, variant="primary", compact=True)
            yield Button("Quit without saving", id=NO_SAVE, variant="error", compact=True)
            yield Button("Cancel (keep training)", id=CANCEL, compact=True)
            yield Static("Enter picks · ↑/↓ or Tab moves · Esc cancels", classes="dialog-hint")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or CANCEL)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
