"""Exit codes, and the one mapping from how a run ended to the code its process exits with.

  0      the run finished, or was stopped from the monitor
  1      unexpected error (traceback in the run's train.log, a short message on screen); for `tune` and
         `bench --compare`: no winner, the machine's load changed while timing, twice
  2      bad usage, config, data or checkpoint (one line naming the problem and the fix)
  3      the loss became NaN/Inf (the checkpoints keep the last finite weights)
  4      a checkpoint could not be written (disk full, permissions); the previous one is untouched
  128+N  stopped by signal N after writing last.pt (130 ctrl+c, 143 SIGTERM, 129 SIGHUP); 141 (SIGPIPE): the
         reader of the output went away, the command ended quietly
"""

from __future__ import annotations

from tuigpt.run.events import RunFailed, RunFinished

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NAN, EXIT_DISK = 0, 1, 2, 3, 4
BY_REASON = {"nan": EXIT_NAN, "disk": EXIT_DISK}


def exit_code(ending: RunFinished | RunFailed | None, signalled: int | None = None) -> int:
    """The process's exit code: from the run's last event, and the signal that asked it to stop, if any."""
    if isinstance(ending, RunFailed):
        return EXIT_ERROR
    if isinstance(ending, RunFinished) and ending.reason in BY_REASON:
        return BY_REASON[ending.reason]
    if signalled is not None:
        return 128 + signalled
    return EXIT_OK
