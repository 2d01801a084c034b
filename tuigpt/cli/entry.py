"""The process's entry (the `tuigpt` command and `python -m tuigpt`): signals are handled from its first line, and
nothing at its end can hold it.

Until a run's own signal handling is in place (:mod:`tuigpt.host.signals`), a stop signal unwinds the start as an
exception, held while an import or a lock is under way (:mod:`tuigpt.run.interrupts`), so a start that is stopped
leaves no half-made run folder and ends with one line and 128+N. This module imports builtin modules and two small
modules of tuigpt's before it installs the handlers, so the window before them is the interpreter's own start-up
(site.py and its .pth files: a ctrl+c there is Python's own, a KeyboardInterrupt traceback). The last lines and the
process's end never wait on an output nobody reads (:mod:`tuigpt.run.console`).
"""

from __future__ import annotations

import _signal
import sys

from tuigpt.run.console import finish, say
from tuigpt.run.interrupts import Stopped, install, signal_name


def entry_point() -> None:
    """The `tuigpt` console script and `python -m tuigpt`."""
    install()
    trained = False
    try:
        from tuigpt.cli.main import ran_training, run_cli

        trained = ran_training(sys.argv[1:])
        code = run_cli()
    except KeyboardInterrupt:  # before the CLI's own handling: while tuigpt itself was being imported
        say("interrupted")
        code = 128 + _signal.SIGINT
    except Stopped as stop:
        say(f"stopped by {signal_name(stop.signum)}")
        code = 128 + stop.signum
    finish(code, teardown=not trained)
