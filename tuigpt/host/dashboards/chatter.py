"""What the dashboard packages print goes to the run's dashboards.log, not into the terminal.

trackio prints several lines on ``init`` and ``finish`` (where the run is logged, how to open its dashboard) and
any package may warn on stderr. Those calls run on the dashboards' own threads, while the headless lines or the
monitor own the terminal, so sys.stdout and sys.stderr are replaced, while dashboards are open, by streams that
send what those threads write to the log and everything else where it went before. A thread a package starts
itself (TensorBoard's writer) that dies of an exception has its traceback logged there too: the sink that used
it says it failed, in one line. tuigpt says where each dashboard's run is in one line of its own.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, Any, TextIO

PACKAGES = ("tensorboard", "wandb", "trackio", "gradio_client", "huggingface_hub")  # whose threads' deaths are logged


def package_thread(args: threading.ExceptHookArgs) -> bool:
    """Whether the thread that died was a dashboard package's: its class is the package's (TensorBoard's writer), or
    the exception came through the package's code."""
    modules = [type(args.thread).__module__] if args.thread is not None else []
    tb = args.exc_traceback
    while tb is not None:
        modules.append(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    return any(module.split(".")[0] in PACKAGES for module in modules)


class ThreadRoutedStream:
    """A text stream that writes for the threads in ``routed`` to ``log`` and for every other thread to ``default``
    (whose attributes it otherwise has: fileno, isatty, encoding)."""

    def __init__(self, default: TextIO, log: IO[str], routed: set[int]) -> None:
        self._default = default
        self._log = log
        self._routed = routed

    def write(self, text: str) -> int:
        if threading.get_ident() in self._routed:
            try:
                self._log.write(text)
                self._log.flush()
            except (OSError, ValueError):
                pass  # a full disk loses the chatter, nothing else
            return len(text)
        return self._default.write(text)

    def flush(self) -> None:
        if threading.get_ident() not in self._routed:
            self._default.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._default, name)


class Chatter:
    """Routes the dashboard threads' stdout and stderr to ``path`` from :meth:`route` to :meth:`restore`."""

    def __init__(self, path: Path, mode: int) -> None:
        self.path = path
        self._mode = mode
        self._routed: set[int] = set()
        self._log: IO[str] | None = None
        self._saved: tuple[TextIO, TextIO] | None = None
        self._excepthook: object = None

    def route(self) -> None:
        """Install the routed streams (on the main thread, before any front end takes the terminal)."""
        if self._saved is not None:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self._mode)
            self._log = os.fdopen(fd, "a", encoding="utf-8", errors="replace")
        except OSError:
            return  # no log, no routing: the packages' lines then reach the terminal
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = ThreadRoutedStream(sys.stdout, self._log, self._routed)  # type: ignore[assignment]
        sys.stderr = ThreadRoutedStream(sys.stderr, self._log, self._routed)  # type: ignore[assignment]
        self._excepthook = threading.excepthook
        threading.excepthook = self._thread_died

    def _thread_died(self, args: threading.ExceptHookArgs) -> None:
        if not package_thread(args) or self._log is None:
            self._excepthook(args)  # type: ignore[operator]
            return
        name = args.thread.name if args.thread is not None else "?"
        try:
            self._log.write(f"--- thread {name} died:\n" + "".join(
                traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)))
            self._log.flush()
        except (OSError, ValueError):
            pass

    def this_thread(self) -> None:
        """What the calling thread prints from now on goes to the log."""
        self._routed.add(threading.get_ident())

    def restore(self) -> None:
        """Put the streams back (only where nothing replaced them meanwhile) and close the log."""
        if self._saved is None:
            return
        stdout, stderr = self._saved
        if isinstance(sys.stdout, ThreadRoutedStream):
            sys.stdout = stdout
        if isinstance(sys.stderr, ThreadRoutedStream):
            sys.stderr = stderr
        self._saved = None
        if threading.excepthook == self._thread_died:
            threading.excepthook = self._excepthook  # type: ignore[assignment]
        if self._log is not None:
            try:
                self._log.close()
            except OSError:
                pass
            self._log = None
