"""Where tuigpt keeps files that outlive a run (downloaded data, token caches, calibrations)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "TUIGPT_CACHE_DIR"


def cache_dir() -> Path:
    """The user cache directory: $TUIGPT_CACHE_DIR, else $XDG_CACHE_HOME/tuigpt, else ~/.cache/tuigpt."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tuigpt"
