"""Failure isolation: no exception in a pane, a timer or a message handler of the monitor may stop training.

Textual ends the whole app on any unhandled exception (and the message loop that raised it stops for good),
so the monitor's own code runs behind :func:`guarded`: an exception there is caught, written to the events
log once with where it happened, and shown in place in the pane that failed; the app and the run go on.
What still escapes (a bug inside Textual itself) ends the app: :class:`FailureIsolation` keeps the error in
``crashed`` so the host can keep the run training without the monitor (see host/wiring.py).
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])


def guarded(where: str | None = None) -> Callable[[F], F]:
    """Run a method of the app or of a pane; an exception becomes the app's ``report_failure`` (a pane's own
    failure is shown in that pane; ``where`` defaults to the pane's id)."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:  # the monitor must never take training down with it
                is_app = hasattr(self, "report_failure")
                try:
                    app = self if is_app else self.app
                except Exception:  # a pane that is not mounted (any more): nobody to tell
                    return None
                report = getattr(app, "report_failure", None)
                if report is None:
                    raise
                report(where or getattr(self, "id", None) or type(self).__name__, exc, None if is_app else self)
                return None

        return call  # type: ignore[return-value]

    return wrap


def failure_text(where: str, exc: BaseException) -> Text:
    """What a pane that failed shows in place of its content."""
    text = Text(f"{where} failed: ", style="bold yellow")
    text.append(f"{type(exc).__name__}: {exc}"[:300])
    text.append("\ntraining goes on; details in the events log", style="dim")
    return text


class FailureIsolation:
    """Mixin of the app: ``report_failure`` for the guarded code, ``crashed`` for what Textual itself could not
    survive. The app provides ``_events_log`` and ``clock``."""

    crashed: BaseException | None = None
    """An error that ended the app (None: it ended normally)."""

    _failures_seen: set[tuple[str, str]]

    def report_failure(self, where: str, exc: BaseException, pane: Any = None) -> None:
        """A part of the monitor failed: say so in its pane and, once per distinct error, in the events log."""
        app: Any = self
        if not hasattr(self, "_failures_seen"):
            self._failures_seen = set()
        if pane is not None and hasattr(pane, "show_failure"):
            try:
                pane.show_failure(failure_text(where, exc))
            except Exception:  # the pane cannot even show that: the log line below still says it
                pass
        key = (where, f"{type(exc).__name__}: {exc}")
        if key in self._failures_seen:
            return
        self._failures_seen.add(key)
        where_in_code = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        at = f" at {where_in_code[0].filename.rsplit('/', 1)[-1]}:{where_in_code[0].lineno}" if where_in_code else ""
        try:
            app._events_log.add(app.clock(), f"monitor: {where} failed ({key[1][:200]}{at}); training goes on",
                                "error")
        except Exception:
            pass

    def _handle_exception(self, error: Exception) -> None:
        """Textual's last resort (it ends the app): remember the error so the host can go on without the UI."""
        if self.crashed is None:
            self.crashed = error
        super()._handle_exception(error)  # type: ignore[misc]


class ShowsFailure:
    """Mixin of a Static pane: its failure replaces its content until it draws again; ``show_text`` relays out
    only when the number of lines changed (the panes are sized by their content, and redraw every second)."""

    _shown_lines = -1

    def show_text(self, text: Text) -> None:
        lines = text.plain.count("\n")
        self.update(text, layout=lines != self._shown_lines)  # type: ignore[attr-defined]
        self._shown_lines = lines

    def show_failure(self, text: Text) -> None:
        self.show_text(text)
