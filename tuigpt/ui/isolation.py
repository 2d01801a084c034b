"""Failure isolation: no exception in a pane, a timer or a message handler of the monitor may stop training.

Textual ends the whole app on any unhandled exception (and the message loop that raised it stops for good),
so the monitor's own code runs behind :func:`guarded`: an exception there is caught, written to the events
log once with where it happened (the app's ``report_failure``), and shown in place in the pane that failed;
the app and the run go on. What still escapes (a bug inside Textual itself) ends the app, which keeps the
error in ``crashed`` so the host can keep the run training without the monitor (see host/wiring.py).
"""

from __future__ import annotations

import functools
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
