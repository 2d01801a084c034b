"""Which dashboard run a run folder continues: ``dashboards.json`` beside metrics.jsonl.

``--resume`` continues the same W&B run (its id) and the same trackio run (project, name, id); TensorBoard's run
is the folder's ``tensorboard/`` directory itself. A fresh start over the folder makes new ones and overwrites
what is remembered here.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tuigpt.run.files import atomic_write

FILE = "dashboards.json"
_lock = threading.Lock()  # the dashboards' threads update the one file


def remembered(run_dir: Path, sink: str) -> dict[str, Any] | None:
    """What ``sink`` wrote about its run in this folder, or None (never written, or the file is damaged)."""
    entry = _read(run_dir).get(sink)
    return entry if isinstance(entry, dict) else None


def remember(run_dir: Path, sink: str, values: dict[str, Any], mode: int) -> None:
    """Keep ``values`` for ``sink`` (atomically; the other sinks' entries stay)."""
    with _lock:
        data = _read(run_dir)
        data[sink] = values
        atomic_write(run_dir / FILE, json.dumps(data, indent=1).encode(), mode)


def _read(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
