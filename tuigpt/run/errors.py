"""Errors that reach the user as one line and exit code 2 (bad config, CLI, data, checkpoint)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names it and says how.

    The CLI prints ``error: <message>`` on one line and exits with code 2,
    without a traceback.
    """
