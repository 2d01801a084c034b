"""This process's memory: resident now and at its peak (what `tuigpt bench` and `tuigpt tune` report)."""

from __future__ import annotations

import resource
import sys


def peak_rss_bytes() -> int | None:
    """The process's peak resident set size (ru_maxrss: KiB on Linux, bytes on macOS)."""
    try:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (OSError, ValueError):
        return None
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024


def rss_bytes() -> int | None:
    """The process's resident set size now."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - a figure we cannot read is shown as n/a
        return None
