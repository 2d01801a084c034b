"""The per-user index of run directories: how `tuigpt runs` and `tuigpt watch` find a run from any directory.

``<cache_dir>/runs.json`` maps each run directory's absolute path to its name and when it last started. A run
adds itself when it starts (atomically, under a lock, so two runs starting at once both stay); a directory
that is gone, or no longer holds a metrics.jsonl, is pruned the next time the index is read. Losing the file
loses nothing but the convenience: every run is still where its config put it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tuigpt.run.files import atomic_write, locked
from tuigpt.run.paths import cache_dir
from tuigpt.run.user_files import read_regular

INDEX_FILE = "runs.json"
MAX_INDEX_BYTES = 16 << 20  # runs.json: a few hundred bytes a run
MAX_RUNS = 500  # the most recently started are kept: the index stays small however many runs a user makes
_METRICS = "metrics.jsonl"  # rundir.METRICS_FILE (rundir imports this module)


def index_path() -> Path:
    return cache_dir() / INDEX_FILE


def _read(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(read_regular(path, MAX_INDEX_BYTES))  # never a FIFO, never unbounded
    except (OSError, ValueError, RecursionError):
        return {}
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, dict):
        return {}
    return {str(k): v for k, v in runs.items() if isinstance(v, dict)}


def _write(path: Path, runs: dict[str, dict[str, Any]]) -> None:
    newest = sorted(runs.items(), key=lambda kv: float(kv[1].get("started", 0.0)), reverse=True)[:MAX_RUNS]
    atomic_write(path, json.dumps({"runs": dict(newest)}, indent=1, sort_keys=True).encode("utf-8"))


def remember_run(run_dir: str | Path, now: float | None = None) -> None:
    """Add (or refresh) a run directory; never fails a run (an unwritable cache only loses the entry)."""
    path = index_path()
    where = str(Path(run_dir).resolve())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path):
            runs = _read(path)
            runs[where] = {"name": Path(where).name, "started": time.time() if now is None else now}
            _write(path, runs)
    except OSError:
        pass


def indexed_runs() -> list[Path]:
    """The indexed run directories that still hold a metrics.jsonl; the others are pruned from the index."""
    path = index_path()
    runs = _read(path)
    alive = [p for p in runs if (Path(p) / _METRICS).is_file()]
    if len(alive) < len(runs):
        try:
            with locked(path):
                current = _read(path)  # re-read under the lock: a run may have started meanwhile
                _write(path, {k: v for k, v in current.items() if k in alive or k not in runs})
        except OSError:
            pass
    return [Path(p) for p in alive]
