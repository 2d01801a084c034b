"""`tuigpt watch [RUN_DIR|NAME] [--out_dir DIR] [--compare RUN_DIR]`: the monitor on a run in another process,
found from any directory (the per-user run index).

Where stdout or stdin is not a terminal (`> file`, `| less`, `</dev/null`, cron) it prints the headless lines
instead of drawing the monitor, and exits when the run ends. A run that is still setting up (its lock is held,
its first records not written yet: `nohup tuigpt ... &` a moment ago) is waited for, saying so; so is a run named
in a terminal that does not exist yet. Ctrl+C gives up.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from tuigpt.cli.args import Parser
from tuigpt.run.errors import UserError
from tuigpt.run.events import Event, HistoryLoaded, IterationStats, RunStarted
from tuigpt.run.exits import EXIT_OK
from tuigpt.run.interrupts import Stopped, signal_name
from tuigpt.run.lock import holder
from tuigpt.run.rundir import DEFAULT_OUT_DIR, LOCK_FILE, METRICS_FILE, resolve_run_dir

POLL = 0.25  # seconds between looks while waiting for a run to appear


def main(args: list[str]) -> int:
    try:
        return _watch(args)
    except KeyboardInterrupt:  # ctrl+c while waiting for a run: only this view ends
        print("tuigpt watch: interrupted; the run (if any) goes on in its own process", file=sys.stderr)
        return 128 + signal.SIGINT
    except Stopped as stop:  # `timeout 10 tuigpt watch …` read as if the run had stopped
        print(f"tuigpt watch stopped by {signal_name(stop.signum)}; the run goes on in its own process",
              file=sys.stderr)
        return 128 + stop.signum


def _watch(args: list[str]) -> int:
    parser = Parser(prog="tuigpt watch", description="Open the monitor on a run in another process (or ended): "
                    "follow its metrics.jsonl and steer it through its control socket. Without a terminal, print "
                    "its lines instead and exit when it ends.")
    parser.add_argument("run_dir", nargs="?", default=None, help="the run's directory or name (default: the most "
                        "recently updated of your runs, see `tuigpt runs`)")
    parser.add_argument("--out_dir", default=None, help="look only under this directory")
    parser.add_argument("--compare", default=None, metavar="RUN_DIR", help="overlay another run's loss curves")
    ns = parser.parse_args(args)
    path = find_run(ns.run_dir, ns.out_dir, interactive=sys.stdin.isatty())
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        return follow_lines(path)
    compare = resolve_run_dir(ns.compare, ns.out_dir) if ns.compare else None
    from tuigpt.control.follower import WatchController
    from tuigpt.ui.app import TuiGptApp

    controller = WatchController(path)
    app = TuiGptApp(controller, config_path=str(path), watching=True, compare=compare)
    # the terminal went away (a closed SSH session, a killed tmux): a watcher has nothing to save, and a Textual app
    # left on a dead terminal spun at half a CPU for hours; the run it watched lives in its own process
    signal.signal(signal.SIGHUP, lambda signum, _frame: os._exit(128 + signum))
    try:
        app.run()
    finally:
        controller.close()
    if app.crashed is not None:  # the run lives in its own process and goes on; only this view ended
        print(f"tuigpt watch: the monitor failed ({type(app.crashed).__name__}: {app.crashed}); the run is not "
              f"affected: `tuigpt watch {path}` opens it again", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- which run, and waiting for it


def starting_run(run_dir: str | None, out_dir: str | None) -> Path | None:
    """A run still setting up: its folder's lock is held by a live process and it has written nothing since (the
    dtype/compile trials, the data, the model come before the first record). The one named, or else the newest
    such folder under out_dir (./checkpoints) that is newer than every run with records."""
    if run_dir is not None:
        folders = [Path(run_dir), Path(out_dir or DEFAULT_OUT_DIR) / run_dir]
    else:
        root = Path(out_dir or DEFAULT_OUT_DIR)
        folders = sorted((p for p in root.glob("*") if (p / LOCK_FILE).is_file()),
                         key=lambda p: _mtime(p / LOCK_FILE), reverse=True) if root.is_dir() else []
    for folder in folders:
        if (folder / LOCK_FILE).is_file() and _silent_since_lock(folder) and holder(folder) is not None:
            return folder
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _silent_since_lock(folder: Path) -> bool:
    """Nothing written to metrics.jsonl since the lock was taken (a resume's file is older than its lock)."""
    return _mtime(folder / METRICS_FILE) < _mtime(folder / LOCK_FILE)


def find_run(run_dir: str | None, out_dir: str | None, interactive: bool) -> Path:
    """The run meant, waiting (and saying so) for one that is starting, or, in a terminal, for a named one that
    does not exist yet."""
    starting = starting_run(run_dir, out_dir)
    if starting is not None and (run_dir is not None or _newer_than_every_run(starting, out_dir)):
        return _wait_for_records(starting)
    try:
        return resolve_run_dir(run_dir, out_dir)
    except UserError as exc:
        if run_dir is None or not interactive:
            raise
        print(f"tuigpt watch: {exc}; waiting for a run named {run_dir} to appear (a run started a moment ago "
              f"makes its folder after its set-up) — Ctrl+C to give up", file=sys.stderr, flush=True)
    while True:
        time.sleep(POLL)
        if (starting := starting_run(run_dir, out_dir)) is not None:
            return _wait_for_records(starting)
        try:
            return resolve_run_dir(run_dir, out_dir)
        except UserError:
            continue


def _newer_than_every_run(folder: Path, out_dir: str | None) -> bool:
    from tuigpt.run.rundir import find_runs

    runs = find_runs(out_dir)
    return not runs or _mtime(folder / LOCK_FILE) > _mtime(runs[0] / METRICS_FILE)


def _wait_for_records(folder: Path) -> Path:
    pid = holder(folder)
    print(f"tuigpt watch: {folder} is starting (pid {pid}) and has written no records yet: waiting for them "
          f"— Ctrl+C to give up", file=sys.stderr, flush=True)
    while _silent_since_lock(folder):
        if holder(folder) is None:
            if _silent_since_lock(folder):
                raise UserError(f"the run in {folder} ended before writing its first records: its own output says "
                                f"why (nohup.out, or the terminal it was started from)")
            break
        time.sleep(POLL)
    return resolve_run_dir(str(folder))


# ---------------------------------------------------------------- lines instead of the monitor


def follow_lines(path: Path) -> int:
    """The run's history and live events as the headless lines, until the run ends (or the reader goes away: a
    closed pipe ends this watcher quietly, as `head` expects)."""
    from tuigpt.control.follower import WatchController
    from tuigpt.ui.headless import HeadlessPrinter

    controller = WatchController(path, from_file=True)
    printer = HeadlessPrinter(sys.stdout)
    gone = threading.Event()
    printed = [-1]  # the last iteration printed: the replay hands the latest one over twice (history, then "now")

    def line(event: Event) -> None:
        if isinstance(event, RunStarted):
            printed[0] = -1  # a resumed session goes on from its checkpoint, below where the last one got
        elif isinstance(event, IterationStats):
            if event.iter <= printed[0]:
                return
            printed[0] = event.iter
        printer(event)

    def show(event: Event) -> None:
        if gone.is_set():
            return
        try:
            for each in event.events if isinstance(event, HistoryLoaded) else [event]:  # the history's lines first
                line(each)
        except OSError:  # EPIPE: `tuigpt watch RUN | head` has read what it wanted
            gone.set()

    controller.subscribe(show)
    controller.start()
    try:
        while not controller.wait(POLL) and not gone.is_set():
            pass
    finally:
        controller.close()
    if gone.is_set():
        raise BrokenPipeError("the output was closed")
    return EXIT_OK
