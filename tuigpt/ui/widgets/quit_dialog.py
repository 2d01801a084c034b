"""The quit dialog: save and quit (focused, so `q` then Enter saves), quit without saving, cancel."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

SAVE, NO_SAVE, CANCEL, DETACH = "save", "nosave", "cancel", "detach"


class QuitDialog(ModalScreen[str]):
    """Dismisses with SAVE, NO_SAVE or CANCEL (and DETACH when ``detach``: a watcher of another process's run)."""

    AUTO_FOCUS = "#save"

    def __init__(self, detach: bool = False) -> None:
        super().__init__()
        self.detach = detach
        if detach:
            self.AUTO_FOCUS = "#detach"  # a watcher's q most often means "leave", never "stop" by accident
    BINDINGS = [
        Binding("escape", "choose('cancel')", "Cancel"),
        Binding("down,j", "app.focus_next", "Next", show=False),
        Binding("up,k", "app.focus_previous", "Previous", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog", classes="dialog"):
            if self.detach:
                yield Static("Leave the watcher, or stop the run?", classes="dialog-title")
                yield Button("Detach (training goes on)", id=DETACH, variant="primary", compact=True)
            else:
                yield Static("Stop the run and quit?", classes="dialog-title")
            stop = "Stop the run: " if self.detach else ""
            yield Button(f"{stop}Save checkpoint and quit", id=SAVE, variant="primary", compact=True)
            yield Button(f"{stop}Quit without saving", id=NO_SAVE, variant="error", compact=True)
            yield Button("Cancel (keep training)", id=CANCEL, compact=True)
            yield Static("Enter picks · ↑/↓ or Tab moves · Esc cancels", classes="dialog-hint")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or CANCEL)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
