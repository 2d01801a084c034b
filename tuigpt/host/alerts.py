"""alert_command: the user's program, run on every alert (notify-send, mail, ntfy, a phone...).

Run without a shell (the config value is split like a shell would, ``{event}``, ``{kind}``, ``{run}``,
``{iter}`` and ``{time}`` in any word replaced: see :meth:`AlertCommand.argv`), with the alert as JSON on its
stdin and a timeout, its output bounded and its whole process group killed when it ends
(:mod:`tuigpt.host.command`). It runs on its own thread, one alert after another, so a slow, hung or flooding
command never holds training up; each failure is reported as a warning. At the end of the run the alerts still
queued get ALERT_COMMAND_TIMEOUT to go out, and a command still running then is killed.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
from typing import Callable

from tuigpt.host.command import MAX_OUTPUT, Running, run_command
from tuigpt.run.alerts import Alert, alert_for, split_command
from tuigpt.run.errors import UserError
from tuigpt.run.events import Event, Notice, RunStarted
from tuigpt.run.fmt import clip, shown

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
        raise UserError(f"config key alert_command={shown(command, 120)}: {shown(program, 80)} is not an executable "
                        f"program (install it, give its full path, or leave alert_command empty)")
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
        self._running = Running()
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
            pass
        self._thread.join(self.timeout if wait is None else wait)
        if self._thread.is_alive():
            self._running.kill()  # still running at the run's end: it does not outlive the run
            self._thread.join(1.0)  # its warning goes out with the run's last records

    def _work(self) -> None:
        while (alert := self._queue.get()) is not None:
            self._run(alert)

    def _run(self, alert: Alert) -> None:
        argv = self.argv(alert)
        name = clip(argv[0], 80)
        data = json.dumps(alert.payload(self.run_name, self.run_dir)).encode()
        try:
            done = run_command(argv, data, self.timeout, self._running)
        except OSError as exc:
            self._warn(f"alert_command {name} could not run: {exc.strerror or exc}")
            return
        if done.killed == "timeout":
            self._warn(f"alert_command {name} did not finish in {self.timeout:g} s and was killed (with what it "
                       f"started)")
            return
        if done.killed == "stopped":
            self._warn(f"alert_command {name} was still running when the run ended and was killed (with what it "
                       f"started)")
            return
        if done.killed == "flood":
            self._warn(f"alert_command {name} wrote more than {MAX_OUTPUT // 1024} KiB to stderr and was killed (with "
                       f"what it started)")
            return
        self.calls += 1
        if done.returncode != 0:
            said = done.last_line()
            self._warn(f"alert_command {name} exited with {done.returncode} after {done.seconds:.1f} s"
                       + (f": {said}" if said else ""))

    def _warn(self, message: str) -> None:
        self._publish(Notice(level="warning", message=message))
