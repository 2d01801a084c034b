"""A run directory, ``<out_dir>/<run_name>/``: the files in it, and finding runs.

| file            | written by                                       |
|-----------------|--------------------------------------------------|
| last.pt, best.pt| the trainer's checkpoint manager (atomically)    |
| metrics.jsonl   | the metrics writer (append-only, a line a record)|
| train.log       | the trainer, when it crashes (the traceback)     |
| control.sock    | the control server, while the run lives          |
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tuigpt.run.errors import UserError

METRICS_FILE = "metrics.jsonl"
LAST = "last.pt"
BEST = "best.pt"
TRAIN_LOG = "train.log"
SOCKET = "control.sock"


@dataclass(frozen=True)
class RunDir:
    """The paths of one run's files."""

    path: Path

    @classmethod
    def of(cls, out_dir: str | Path, run_name: str) -> RunDir:
        return cls(Path(out_dir) / run_name)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def train_log(self) -> Path:
        return self.path / TRAIN_LOG

    @property
    def socket(self) -> Path:
        return self.path / SOCKET

    def log_traceback(self, tb: str, who: str, iteration: int) -> None:
        """Append an unexpected error's traceback to train.log (best effort: the error itself is reported)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with open(self.train_log, "a", encoding="utf-8") as f:
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} unexpected error{who} at iteration {iteration}\n")
                f.write(tb)
        except OSError:
            pass

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


def run_dirs(out_dir: str | Path) -> list[Path]:
    """Directories under out_dir holding a metrics.jsonl, most recently updated first."""
    root = Path(out_dir)
    found = [p.parent for p in root.glob(f"*/{METRICS_FILE}")] if root.is_dir() else []
    return sorted(found, key=lambda d: _mtime(d / METRICS_FILE), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def resolve_run_dir(run_dir: str | None, out_dir: str) -> Path:
    """The run meant: the one named (a directory, its metrics.jsonl, or a name under out_dir), or the most
    recently updated under out_dir; UserError naming what to do otherwise."""
    if run_dir is None:
        runs = run_dirs(out_dir)
        if not runs:
            raise UserError(f"no runs under {out_dir}/ (no */{METRICS_FILE}): name one, `tuigpt watch RUN_DIR`, "
                            f"or pick another --out_dir")
        return runs[0]
    path = Path(run_dir)
    if path.is_file() and path.name == METRICS_FILE:
        path = path.parent
    if not path.is_dir():
        candidate = Path(out_dir) / run_dir  # `tuigpt watch tiny` for checkpoints/tiny
        if candidate.is_dir():
            path = candidate
        else:
            raise UserError(f"{run_dir} is not a run directory (see `tuigpt runs` for the runs under {out_dir}/)")
    if not (path / METRICS_FILE).is_file():
        raise UserError(f"{path} has no {METRICS_FILE}: not a tuigpt run directory (see `tuigpt runs`)")
    return path
