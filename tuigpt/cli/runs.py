"""`tuigpt runs [--out_dir DIR] [--json|--csv]`: every run this user started (the per-user index) and those under
./checkpoints, or only those under --out_dir, so a user on a remote box finds theirs from any directory. A table
for people, or the same runs as JSON or CSV for programs (one object or row per run, typed, empty where unknown)."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tuigpt.cli.args import Parser
from tuigpt.control.wire import ping
from tuigpt.run import fmt
from tuigpt.run.errors import UserError
from tuigpt.run.lock import holder
from tuigpt.run.rundir import find_runs
from tuigpt.run.runindex import index_path
from tuigpt.run.status import RunSummary, summarize


def shown_path(path: Path, cwd: Path | None = None) -> str:
    """A run directory as short as it stays unambiguous: relative below the current directory, ~ for home."""
    cwd = cwd or Path.cwd()
    full = path.resolve()
    try:
        return str(full.relative_to(cwd.resolve()))
    except ValueError:
        pass
    home = Path.home().resolve()
    try:
        return os.path.join("~", full.relative_to(home))
    except ValueError:
        return str(full)


def format_table(runs: list[RunSummary], now: float | None = None) -> str:
    now = time.time() if now is None else now
    targets = any(r.target for r in runs)  # the TARGET column only when some run has a target_loss
    plans = any(r.plan for r in runs)  # the PLAN column only when some run ends at a time
    header = ("RUN", "STATE", "ITER", "BEST VAL", "TOK/S", "DEVICE", "UPDATED", "DIRECTORY") + (
        ("TARGET",) if targets else ()) + (("PLAN",) if plans else ())
    rows = [header]
    for r in runs:
        it = "-" if r.iteration is None else f"{r.iteration:,}" + ("" if r.max_iters is None else f"/{r.max_iters:,}")
        rows.append((r.name, r.state, it, "-" if r.best_val_loss is None else f"{r.best_val_loss:.4f}",
                     "-" if r.tokens_per_sec is None else fmt.count(r.tokens_per_sec), r.device or "-",
                     fmt.ago(now - r.updated), shown_path(r.path)) + ((r.target or "-",) if targets else ())
                    + ((r.plan or "-",) if plans else ()))
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def as_record(run: RunSummary) -> dict[str, Any]:
    """A run as plain data: every RunSummary field (the path absolute), ``updated`` as ISO 8601 and Unix time."""
    record = dataclasses.asdict(run)
    record["path"] = str(run.path.resolve())
    record["updated"] = datetime.datetime.fromtimestamp(run.updated).astimezone().isoformat(timespec="seconds")
    record["updated_unix"] = run.updated
    return record


def write_records(runs: list[RunSummary], fmt: str, out: TextIO) -> None:
    records = [as_record(r) for r in runs]
    if fmt == "json":
        json.dump(records, out, indent=1)
        out.write("\n")
        return
    columns = list(as_record(runs[0])) if runs else [f.name for f in dataclasses.fields(RunSummary)] + ["updated_unix"]
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)


def alive(run_dir: Path) -> bool:
    """A process holds the run's lock (even when every control-socket slot is taken), or answers a ping."""
    return holder(run_dir) is not None or ping(run_dir)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def main(args: list[str], out: TextIO | None = None) -> int:
    parser = Parser(prog="tuigpt runs", description="List your runs, newest first: every run you started (from any "
                    "directory) and those under ./checkpoints, or only those under --out_dir.")
    parser.add_argument("--out_dir", default=None, help="list only the runs under this directory")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--json", dest="fmt", action="store_const", const="json", help="the runs as a JSON array")
    data.add_argument("--csv", dest="fmt", action="store_const", const="csv", help="the runs as CSV with a header")
    ns = parser.parse_args(args)
    out = out or sys.stdout
    if ns.out_dir is not None and not Path(ns.out_dir).is_dir():
        raise UserError(f"{ns.out_dir}/ does not exist: no runs there (leave out --out_dir to list every run you "
                        f"started)")
    runs = []
    for run_dir in find_runs(ns.out_dir):
        try:
            runs.append(summarize(run_dir, alive))
        except OSError:
            continue  # removed while we looked
        except Exception as exc:  # noqa: BLE001 - one run's unreadable file must not cost the listing of the others
            runs.append(RunSummary(run_dir.name, run_dir, f"unreadable ({type(exc).__name__})", None, None, None,
                                   None, None, _mtime(run_dir)))
    if ns.fmt is not None:  # programs get an empty array or a header alone, never prose
        write_records(runs, ns.fmt, out)
        return 0
    if not runs:
        where = f"under {ns.out_dir}/" if ns.out_dir is not None else f"under checkpoints/ or in {index_path()}"
        print(f"no runs {where}", file=out)
        return 0
    print(format_table(runs), file=out)
    print(f"\nwatch one: tuigpt watch {shown_path(runs[0].path)}", file=out)
    return 0
