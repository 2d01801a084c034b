"""`tuigpt`: dispatch to the subcommands, one module each, imported only when used (so `tuigpt runs` and
`tuigpt watch` never import torch). Exit codes: :mod:`tuigpt.run.exits`."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Sequence

from tuigpt.cli.args import HELP, closest_command
from tuigpt.run.console import finish, say
from tuigpt.run.errors import UserError
from tuigpt.run.exits import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from tuigpt.run.interrupts import Stopped, install, signal_name, stop_handler

HELP_WORDS, VERSION_WORDS = ("-h", "--help", "help"), ("-V", "--version", "version")  # never a config file
SUBCOMMANDS = {"sample": "sample", "bench": "bench", "tune": "tune", "watch": "watch", "runs": "runs",
               "info": "info", "calibrate": "info", "export": "export", "export-metrics": "export_metrics",
               "netcheck": "netcheck", "report": "report", "plan": "plan"}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():  # (signal handlers can only be set there)
        for signum in (signal.SIGTERM, signal.SIGHUP):  # a run replaces these with its own while it trains
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, stop_handler)
    try:
        if not args or args[0] in HELP_WORDS:
            print(HELP, end="")
            return EXIT_OK if args else EXIT_USAGE
        if args[0] in VERSION_WORDS:
            from importlib.metadata import PackageNotFoundError, version

            try:
                print(f"tuigpt {version('tuigpt')}")
            except PackageNotFoundError:  # run from a checkout that was never installed
                print("tuigpt (not installed: run from its source folder)")
            return EXIT_OK
        if args[0] in SUBCOMMANDS:
            module = importlib.import_module(f"tuigpt.cli.{SUBCOMMANDS[args[0]]}")
            return int(module.main(args[1:]) if args[0] != "calibrate" else module.calibrate_main(args[1:]))
        if not Path(args[0]).exists() and Path(args[0]).suffix not in (".yaml", ".yml", ".py") and (
                meant := closest_command(args[0], list(SUBCOMMANDS))) is not None:
            raise UserError(f"unknown command {args[0]!r}: did you mean `tuigpt {meant}`? (a config to train is a "
                            f".yaml or .py file; see `tuigpt --help`)")
        from tuigpt.cli.train import main as train_main

        return train_main(args)
    except UserError as exc:
        say("error: " + str(exc).replace("\n", "\\n"))  # one line, whatever value the message quotes
        return exc.exit_code
    except KeyboardInterrupt:
        say("interrupted")
        return 128 + signal.SIGINT
    except Stopped as stop:
        say(f"stopped by {signal_name(stop.signum)}")
        return 128 + stop.signum


def run_cli() -> int:
    """:func:`main` for the process (see :mod:`tuigpt.cli.entry`): unexpected errors get a short message, not a
    wall of traceback; output to a reader that went away (`tuigpt runs | head -3`) ends the command quietly."""
    try:
        code = main()
        sys.stdout.flush()  # what is still buffered meets a closed pipe here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        return _reader_gone()
    except Exception as exc:  # the run's own errors are logged in train.log by the trainer
        log = _crash_log(traceback.format_exc())
        say(f"tuigpt: unexpected error: {type(exc).__name__}: {str(exc)[:500]} (traceback in {log})")
        return EXIT_ERROR


def entry_point() -> None:
    """The console script of installs made before :mod:`tuigpt.cli.entry` (their wrapper names this function):
    the same, with the handlers installed once this module is loaded."""
    install()
    finish(run_cli())


def ran_training(args: list[str]) -> bool:
    """A single-process training run (under torchrun the ranks leave their process group as torch does)."""
    return bool(args) and args[0] not in SUBCOMMANDS and args[0] not in HELP_WORDS + VERSION_WORDS and \
        "RANK" not in os.environ and "--nproc" not in args and not any(a.startswith("--nproc=") for a in args)


def _reader_gone() -> int:
    """The reader of stdout closed it: nothing more can be said there, so stdout is pointed at /dev/null (the
    interpreter's own flush at exit would fail again) and the exit code is a SIGPIPE's, 128 + 13, as for a command
    the signal had ended (the Python documentation's recipe for SIGPIPE, signal module)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 128 + signal.SIGPIPE


def _crash_log(tb: str) -> Path:
    """Append a traceback to crash.log in the cache directory, private (0600: paths and values of the user's)."""
    from tuigpt.run.paths import cache_dir

    path = cache_dir() / "crash.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            os.fchmod(fd, 0o600)  # one an earlier tuigpt made 0644
            f.write(tb)
    except OSError:
        pass
    return path
