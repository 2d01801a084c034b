"""`tuigpt runs [--out_dir DIR] [--json|--csv|--status [RUN]]`: every run this user started (the per-user index) and
those under ./checkpoints, or only those under --out_dir, so a user on a remote box finds theirs from any directory.
A table for people (when each run will be done, its last val loss and how it moved, its best and how long ago), the
same runs as JSON or CSV for programs (one object or row per run, typed, empty where unknown), or one run as one
short ASCII line for a tmux status bar."""

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
from tuigpt.run.rundir import find_runs, resolve_run_dir
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


def position(r: RunSummary) -> str:
    """"1,250/5,000", or "-" when unknown."""
    return "-" if r.iteration is None else f"{r.iteration:,}" + ("" if r.max_iters is None else f"/{r.max_iters:,}")


def eta_text(r: RunSummary, now: float) -> str:
    """When a running run will be done, with the day when it is not today, and how long until then:
    "Mon 03:10 (6h12m)"; "paused" while paused; "-" once it ended; "n/a" before its speed is known."""
    if r.state == "paused":
        return "paused"
    if r.state != "running":
        return "-"
    if r.eta_at is None:
        return "n/a"
    return f"{fmt.clock(r.eta_at, now)} ({fmt.duration(max(0.0, r.eta_at - now))})"


def val_text(r: RunSummary) -> str:
    """The newest eval's val loss and its change since the eval before: "1.4523 (-0.0121)"."""
    if r.val_loss is None:
        return "-"
    return f"{r.val_loss:.4f}" + (f" ({r.val_change:+.4f})" if r.val_change is not None else "")


def best_text(r: RunSummary, short: bool = False) -> str:
    """The best val loss at its eval, and how long it has not improved: "1.4402@1,000, not improved in 3 evals"
    ("1.4402@1,000 (3 evals ago)" when ``short``)."""
    if r.best_val_loss is None:
        return "-"
    text = f"{r.best_val_loss:.4f}" + (f"@{r.best_iter:,}" if r.best_iter is not None else "")
    n = r.evals_since_best
    if n:
        evals = f"{n} eval{'s' * (n != 1)}"
        text += f" ({evals} ago)" if short else f", not improved in {evals}"
    return text


def format_table(runs: list[RunSummary], now: float | None = None) -> str:
    now = time.time() if now is None else now
    targets = any(r.target for r in runs)  # the TARGET column only when some run has a target_loss
    plans = any(r.plan for r in runs)  # the PLAN column only when some run ends at a time
    header = ("RUN", "STATE", "ITER", "ETA", "VAL (CHANGE)", "BEST VAL@ITER", "TOK/S", "DEVICE", "UPDATED",
              "DIRECTORY") + (("TARGET",) if targets else ()) + (("PLAN",) if plans else ())
    rows = [header]
    for r in runs:
        rows.append((r.name, r.state, position(r), eta_text(r, now), val_text(r), best_text(r),
                     "-" if r.tokens_per_sec is None else fmt.count(r.tokens_per_sec), r.device or "-",
                     fmt.ago(now - r.updated), shown_path(r.path)) + ((r.target or "-",) if targets else ())
                    + ((r.plan or "-",) if plans else ()))
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def status_line(r: RunSummary, now: float | None = None) -> str:
    """One run in one short ASCII line, the same fields in the same order every time, nothing that ticks by the
    second (a tmux status bar): "tiny 1,250/5,000 | val 1.4523 (-0.0121) | best 1.4402@1,000 (3 evals ago) |
    ETA Mon 03:10"; the state is said when it is not running, an ended run says when it ended."""
    now = time.time() if now is None else now
    parts = [f"{r.name} {position(r)}" if r.state == "running" else f"{r.name} {r.state} {position(r)}"]
    if r.val_loss is not None:
        parts.append(f"val {val_text(r)}")
    if r.best_val_loss is not None:
        parts.append(f"best {best_text(r, short=True)}")
    if r.state == "running":
        parts.append("ETA " + (fmt.clock(r.eta_at, now) if r.eta_at is not None else "n/a"))
    elif r.state != "paused":
        parts.append(f"ended {fmt.ago(now - r.updated)}")
    line = " | ".join(parts)
    return "".join(c if c.isprintable() and c.isascii() else "?" for c in line)  # a name is the user's: no escapes


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
    data.add_argument("--status", nargs="?", const="", default=None, metavar="RUN",
                      help="one run (a name or directory; the most recently updated one when left out) as one short "
                           "line for a tmux status bar")
    ns = parser.parse_args(args)
    out = out or sys.stdout
    if ns.status is not None:
        run_dir = resolve_run_dir(ns.status or None, ns.out_dir)
        try:
            summary = summarize(run_dir, alive)
        except OSError as exc:
            raise UserError(f"cannot read {run_dir}/metrics.jsonl: {exc.strerror or exc}") from None
        print(status_line(summary), file=out)
        return 0
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
