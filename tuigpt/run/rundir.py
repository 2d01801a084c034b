"""A run directory, ``<out_dir>/<run_name>/``: the files in it, and finding runs.

| file            | written by                                       |
|-----------------|--------------------------------------------------|
| last.pt, best.pt| the trainer's checkpoint manager (atomically)    |
| metrics.jsonl   | the metrics writer (append-only, a line a record)|
| train.log       | the trainer, when it crashes (the traceback)     |
| control.sock    | the control server, while the run lives          |
| run.lock        | the PID of the one process writing the run (which flocks the directory) |

A run directory is made 0700 and its files 0600 (the config, samples and weights are the user's own);
``share_with_group: true`` makes them 0750/0640, for a group that reads them. An existing directory or
file keeps the mode it has (a user's chmod stands).

Runs are found under an out_dir, or from any directory through the per-user index (:mod:`.runindex`).
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from pathlib import Path

from tuigpt.run.errors import UserError
from tuigpt.run.files import append_text
from tuigpt.run.runindex import index_path, indexed_runs

METRICS_FILE = "metrics.jsonl"
LAST = "last.pt"
BEST = "best.pt"
STABLE = "stable.pt"  # a run that ends at a time: the model where its cooldown began (a resume continues it)
TRAIN_LOG = "train.log"
SOCKET = "control.sock"
LOCK_FILE = "run.lock"


def modes(share_with_group: bool) -> tuple[int, int]:
    """(directory mode, file mode) of what a run creates: private, or readable by the owner's group."""
    return (0o750, 0o640) if share_with_group else (0o700, 0o600)


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

    def log_traceback(self, tb: str, who: str, iteration: int, mode: int = 0o600) -> None:
        """Append an unexpected error's traceback to train.log (best effort: the error itself is reported)."""
        append_text(self.train_log, f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} unexpected error{who} at iteration "
                    f"{iteration}\n{tb}", mode)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


DEFAULT_OUT_DIR = "checkpoints"  # TrainConfig.out_dir's default, relative to where a run was started


def run_dirs(out_dir: str | Path) -> list[Path]:
    """Directories under out_dir holding a metrics.jsonl, most recently updated first."""
    root = Path(out_dir)
    found = [p.parent for p in root.glob(f"*/{METRICS_FILE}") if p.is_file()] if root.is_dir() else []  # no FIFO
    return sorted(found, key=lambda d: _mtime(d / METRICS_FILE), reverse=True)


def find_runs(out_dir: str | Path | None) -> list[Path]:
    """The runs a user means, most recently updated first: those under ``out_dir`` when one is given, else
    every run in the per-user index (started from any directory) and those under ./checkpoints."""
    if out_dir is not None:
        return run_dirs(out_dir)
    found: dict[Path, Path] = {}
    for path in [*run_dirs(DEFAULT_OUT_DIR), *indexed_runs()]:
        found.setdefault(path.resolve(), path)
    return sorted(found.values(), key=lambda d: _mtime(d / METRICS_FILE), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _where(out_dir: str | Path | None) -> str:
    return f"under {out_dir}/" if out_dir is not None else f"under {DEFAULT_OUT_DIR}/ or in {index_path()}"


def resolve_run_dir(run_dir: str | None, out_dir: str | Path | None = None) -> Path:
    """The run meant: the one named (a directory, its metrics.jsonl, a name under out_dir, or a name in the
    per-user index), or the most recently updated one; UserError naming what to do otherwise."""
    if run_dir is None:
        runs = find_runs(out_dir)
        if not runs:
            raise UserError(f"no runs {_where(out_dir)}: name one, `tuigpt watch RUN_DIR`, or pick another --out_dir")
        return runs[0]
    path = Path(run_dir)
    if path.is_file() and path.name == METRICS_FILE:
        path = path.parent
    if not path.is_dir():
        candidate = Path(out_dir if out_dir is not None else DEFAULT_OUT_DIR) / run_dir  # `tuigpt watch tiny`
        path = candidate if candidate.is_dir() else _by_name(run_dir, out_dir)
    if not (path / METRICS_FILE).is_file():
        raise UserError(f"{path} has no {METRICS_FILE}: not a tuigpt run directory (see `tuigpt runs`)")
    return path


def _by_name(name: str, out_dir: str | Path | None) -> Path:
    """A run started elsewhere, found by its name in the per-user index."""
    matches = [p for p in indexed_runs() if p.name == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(str(p) for p in matches[:5])
        raise UserError(f"{len(matches)} runs are named {name}: {listed}; give the directory, e.g. "
                        f"`tuigpt watch {matches[0]}`")
    names = sorted({p.name for p in [*find_runs(out_dir), *indexed_runs()]})
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    meant = f"did you mean {close[0]}? " if close else ""
    raise UserError(f"{name} is not a run directory, and no run of that name is {_where(out_dir)} ({meant}see "
                    f"`tuigpt runs`)")
