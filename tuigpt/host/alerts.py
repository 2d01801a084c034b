"""alert_command: the user's program, run on every alert (notify-send, mail, ntfy, a phone...).

Run without a shell (the config value is split like a shell would, ``{event}``, ``{kind}``, ``{run}``,
``{iter}`` and ``{time}`` in any word replaced: see :meth:`AlertCommand.argv`), with the alert as JSON on its stdin and a timeout. It runs on its own thread,
one alert after another, so a slow or hung command never holds training up; each failure is reported
as a warning. At the end of the run the alerts still queued get ALERT_COMMAND_TIMEOUT to go out.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from typing import Callable

from tuigpt.run.alerts import Alert, alert_for, split_command
from tuigpt.run.errors import UserError
from tuigpt.run.events import Event, Notice, RunStarted

ALERT_COMMAND_TIMEOUT = 30.0  # seconds one call may take before it is killed
QUEUE_LIMIT = 32  # alerts waiting for the command; more are dropped (and that is said)


def command_words(command: str) -> list[str]:
    """The command's words, its program checked: UserError when it cannot run at all."""
    words = split_command(command)
    if not words:
        raise UserError("config key alert_command is blank: name a program, or leave it empty")
    program = words[0]
    found = shutil.which(program) if os.sep not in program else (program if os.access(program, os.X_OK) else None)
    if found is None:
        raise UserError(f"config key alert_command={command!r}: {program!r} is not an executable program "
                        f"(install it, give its full path, or leave alert_command empty)")
    return words


class AlertCommand:
    """An event-bus subscriber that runs alert_command for every alert."""

    def __init__(self, command: str, publish: Callable[[Event], None], run_name: str = "", run_dir: str = "",
                 timeout: float = ALERT_COMMAND_TIMEOUT) -> None:
        self.words = command_words(command)
        self._publish = publish
        self.run_name, self.run_dir = run_name, run_dir
        self.timeout = timeout
        self.calls = 0  # commands that ran to the end (tests wait on it)
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._dropped = False
        self._thread = threading.Thread(target=self._work, name="tuigpt-alert-command", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_name, self.run_dir = event.run_name, event.run_dir
            return
        alert = alert_for(event, self.run_name)
        if alert is None:
            return
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            if not self._dropped:
                self._dropped = True
                self._publish(Notice(level="warning", message=f"alert_command is behind: {QUEUE_LIMIT} alerts "
                                     f"waiting, newer ones dropped"))

    def argv(self, alert: Alert) -> list[str]:
        """The words with the placeholders filled in: {event} (the one-line summary, a sentence with spaces) and the
        machine-safe ones, fit for a file name or a URL: {kind} (done, failed, nan, ...), {run} (the run's name),
        {iter} (the iteration) and {time} (local time, 20261206-072817)."""
        at = alert.record.get("time")
        values = {"{event}": alert.summary, "{kind}": alert.kind, "{run}": self.run_name,
                  "{iter}": str(alert.record.get("iter", "")),
                  "{time}": time.strftime("%Y%m%d-%H%M%S", time.localtime(at if isinstance(at, (int, float)) else None))}
        out = []
        for word in self.words:
            for key, value in values.items():
                word = word.replace(key, value)
            out.append(word)
        return out

    def close(self, wait: float | None = None) -> None:
        """Let the queued alerts go out (at most ``wait`` seconds, default the timeout), then stop the thread."""
        try:
            self._queue.put(None, timeout=1.0)
        except queue.Full:
            return
        self._thread.join(self.timeout if wait is None else wait)

    def _work(self) -> None:
        while (alert := self._queue.get()) is not None:
            self._run(alert)

    def _run(self, alert: Alert) -> None:
        argv = self.argv(alert)
        data = json.dumps(alert.payload(self.run_name, self.run_dir)).encode()
        t0 = time.monotonic()
        try:
            done = subprocess.run(argv, input=data, capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            self._warn(f"alert_command {argv[0]} did not finish in {self.timeout:g} s and was killed")
            return
        except OSError as exc:
            self._warn(f"alert_command {argv[0]} could not run: {exc.strerror or exc}")
            return
        self.calls += 1
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            self._warn(f"alert_command {argv[0]} exited with {done.returncode} after {time.monotonic() - t0:.1f} s"
                       + (f": {said[-1][:200]}" if said else ""))

    def _warn(self, message: str) -> None:
        self._publish(Notice(level="warning", message=message))
