"""The monitor's actions: the keys that steer the run or change the view, and the way out (quit dialog,
signals from the host, a run that ends while stopping).

A mixin of :class:`tuigpt.ui.app.TuiGptApp`: every method here works on the app's state.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from textual.worker import get_current_worker

from tuigpt.run.commands import CheckpointNow, Command, Sample, SetEvalInterval, Stop, TogglePause
from tuigpt.run.events import RunState
from tuigpt.run.exits import exit_code
from tuigpt.ui import keys
from tuigpt.ui.history import X_AXES
from tuigpt.ui.messages import RunEnded
from tuigpt.ui.widgets.help_screen import HelpScreen

SCROLLABLE = ("events", "samples")  # what n focuses in the wide layout
from tuigpt.ui.widgets.interval_input import IntervalDialog
from tuigpt.ui.widgets.quit_dialog import CANCEL, DETACH, SAVE, QuitDialog

if TYPE_CHECKING:
    from tuigpt.ui.app import TuiGptApp

    _Base = TuiGptApp
else:
    _Base = object


class MonitorActions(_Base):
    # ------------------------------------------------------------ from the host (any thread, signal handlers)

    def request_stop(self, signum: int) -> None:
        """A signal asked the run to stop: log it, stop with a checkpoint, leave once it has stopped."""
        if self._loop is None:
            self._signalled = signum  # handled on mount
            self.controller.send(Stop(save=True))
            return
        self._loop.call_soon_threadsafe(self._on_signal, signum)

    def leave(self, code: int) -> None:
        """Exit the monitor at once (a repeated signal); the terminal is restored."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: self.exit(code, return_code=code))

    def _on_signal(self, signum: int) -> None:
        if self._outcome is not None:
            self.exit(128 + signum, return_code=128 + signum)
            return
        self._signalled = signum
        self._events_log.add(self.clock(), f"{signal.Signals(signum).name}: stopping and writing last.pt (send it "
                             f"again to leave at once)", "warning")
        self._quit_chosen(SAVE)

    def _exit_with_outcome(self) -> None:
        code = exit_code(self._outcome, self._signalled)
        self.exit(code, return_code=code)

    # ------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in keys.RUN_ACTIONS and action not in keys.VIEW_ACTIONS:
            return True
        if action == "interrupt":
            return True
        if len(self.screen_stack) > 1:
            return False  # a dialog is open: its keys only
        if action in keys.RUN_ACTIONS and (self._outcome is not None or self._stopping):
            return False  # the run is over (or stopping): the footer offers only what still works
        return True

    def _send(self, command: Command, note: str) -> None:
        """Every key that steers the run ends here: send the command, log what the user did."""
        self.controller.send(command)
        self._events_log.add(self.clock(), f"you: {note}", "user")

    def action_toggle_pause(self) -> None:
        self._send(TogglePause(), "resume" if self._state == RunState.PAUSED else "pause")

    def action_checkpoint(self) -> None:
        self._send(CheckpointNow(), "checkpoint now")

    def action_sample(self) -> None:
        self._send(Sample(), "sample now")

    def action_eval_interval(self, factor: float) -> None:
        current = self._requested_interval or self._eval_interval
        if current is None:
            self.notify("The eval interval is not known until the run has started.", severity="warning")
            return
        self._request_interval(max(1, int(current * factor)))

    def action_set_eval_interval(self) -> None:
        def chosen(interval: int | None) -> None:
            if interval is not None:
                self._request_interval(interval)

        self.push_screen(IntervalDialog(self._requested_interval or self._eval_interval), chosen)

    def _request_interval(self, interval: int) -> None:
        self._requested_interval = interval
        self._send(SetEvalInterval(interval), f"eval interval → {interval:,}")

    def action_toggle_log(self) -> None:
        self._log_y = not self._log_y
        self.redraw()

    def action_toggle_zoom(self) -> None:
        self._recent = not self._recent
        self.redraw()

    def action_cycle_x(self) -> None:
        self._x_axis = X_AXES[(X_AXES.index(self._x_axis) + 1) % len(X_AXES)]
        self.redraw()

    def action_next_pane(self) -> None:
        """Compact layout: show the next pane. Wide layout (every pane on screen): move the keyboard focus
        between the scrollable panes (events, samples), so ↑/↓ PgUp/PgDn scroll the one focused."""
        if self.compact:
            names = self._pane_order
            self._select_pane(names[(names.index(self._pane) + 1) % len(names)])
            pane = self._panes[self._pane]
            if self._pane in SCROLLABLE:
                pane.focus()
            else:
                self.set_focus(None)
            return
        focused = self.focused.id if self.focused is not None else None
        target = SCROLLABLE[(SCROLLABLE.index(focused) + 1) % len(SCROLLABLE)] if focused in SCROLLABLE else SCROLLABLE[0]
        self._panes[target].focus()
        self.notify(f"{target} pane focused: ↑/↓ PgUp/PgDn Home/End scroll it (n: the other one)", timeout=3)

    def action_help(self) -> None:
        reasons = {**self._cpu.reasons_shown, **self._gpu.reasons_shown}
        self.push_screen(HelpScreen(self.HELP, reasons))

    def action_interrupt(self) -> None:
        self.action_quit_request()

    def action_quit_request(self) -> None:
        if self._outcome is not None:
            self._exit_with_outcome()
        elif self._stopping:
            self.exit(0, return_code=0)  # asked twice: the user does not want to wait for the trainer
        elif not isinstance(self.screen, QuitDialog):
            self.push_screen(QuitDialog(detach=self.watching), self._quit_chosen)

    def _quit_chosen(self, choice: str | None) -> None:
        if choice == DETACH:  # a watcher leaves; the run goes on in its own process
            self.exit(0, return_code=0)
            return
        if choice in (None, CANCEL):
            self._events_log.add(self.clock(), "you: quit cancelled, training goes on", "user")
            return
        save = choice == SAVE
        self._stopping = True
        self._send(Stop(save=save), "stop and save a checkpoint" if save else "stop without saving")
        self._status.set_note("saving checkpoint… (q again quits at once)" if save else
                              "stopping… (q again quits at once)")
        self.refresh_bindings()
        if self._outcome is not None:  # the run ended while the dialog was open
            self._exit_with_outcome()
        else:
            self.run_worker(self._wait_for_end, thread=True, exclusive=True, group="wait", exit_on_error=False)

    def _wait_for_end(self) -> None:
        """Worker thread: a safety net in case the final event never arrives."""
        worker = get_current_worker()
        while not worker.is_cancelled:  # short waits, so quitting never hangs on this thread
            if self.controller.wait(0.5):
                self.post_message(RunEnded())
                return
