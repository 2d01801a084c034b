"""Errors that reach the user as one line: exit code 2 (bad config, CLI, data, checkpoint) or 4 (a file that could
not be written: a full disk, an I/O error)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names it and says how.

    The CLI prints ``error: <message>`` on one line and exits with ``exit_code`` (2), without a traceback.
    """

    exit_code = 2


class CannotWrite(UserError):
    """An output could not be written for want of room or a working disk (ENOSPC, EDQUOT, EIO): exit 4, and what
    was there before is untouched."""

    exit_code = 4
