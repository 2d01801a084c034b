"""Real read-only and full disks for tests: tmpfs mounts (root where mounts are allowed; the test skips, saying why,
elsewhere)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


@contextlib.contextmanager
def mounted(target: Path, *args: str) -> Iterator[Path]:
    if not target.exists():
        target.mkdir(parents=True)
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount here (needs root where mounts are allowed): {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
