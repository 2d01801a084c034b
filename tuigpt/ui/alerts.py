"""Alerts in the monitor: the bell and a desktop notification, and a toast.

The app owns the terminal while it runs, so the escape sequences go out through Textual's driver — the
way ``App.bell`` rings — between two frames, never in the middle of one. Called on the app's thread.
"""

from __future__ import annotations

import os
from typing import Any

from tuigpt.run.alerts import alert_for, terminal_bytes
from tuigpt.run.events import Event, Notice, RunStarted

# a toast covers the lower right of the screen, where the samples are (a 60 s warning hid a sample asked for;
# the events log keeps every alert); an error stays until someone looks
TOAST_SECONDS = {"information": 15.0, "warning": 15.0, "error": 600.0}


class MonitorAlerts:
    """Turns a run's events into alerts for one app (none until the run started, or when its config says
    ``alerts: false``)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent: list[str] = []  # the kinds alerted, in order (tests read it)

    def observe(self, event: Event, run: RunStarted | None) -> None:
        """``run``: the run the event belongs to, from the run model."""
        if run is None or not run.config.get("alerts", True):
            return
        if isinstance(event, Notice) and event.topic == "contention" and event.level != "warning" and \
                self.sent and self.sent[-1] == "contention":
            self.app.clear_notifications()  # the contention is over: its toast no longer says what is true
        alert = alert_for(event, run.run_name)
        if alert is None:
            return
        self.sent.append(alert.kind)
        driver = getattr(self.app, "_driver", None)
        if driver is not None and not self.app.is_headless:
            driver.write(terminal_bytes(alert, os.environ))
        self.app.notify(alert.summary, title=f"tuigpt {alert.kind}", severity=alert.severity,
                        timeout=TOAST_SECONDS.get(alert.severity, 60.0))
