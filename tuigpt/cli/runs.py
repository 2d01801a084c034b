"""`tuigpt runs [--out_dir DIR]`: the runs under checkpoints/, so a user on a remote box finds theirs."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from tuigpt.cli.args import Parser
from tuigpt.control.wire import ping
from tuigpt.run import fmt
from tuigpt.run.errors import UserError
from tuigpt.run.rundir import run_dirs
from tuigpt.run.status import RunSummary, summarize


def format_table(runs: list[RunSummary], now: float | None = None) -> str:
    now = time.time() if now is None else now
    targets = any(r.target for r in runs)  # the TARGET column only when some run has a target_loss
    header = ("RUN", "STATE", "ITER", "BEST VAL", "TOK/S", "DEVICE", "UPDATED") + (("TARGET",) if targets else ())
    rows = [header]
    for r in runs:
        it = "-" if r.iteration is None else f"{r.iteration:,}" + ("" if r.max_iters is None else f"/{r.max_iters:,}")
        rows.append((r.name, r.state, it, "-" if r.best_val_loss is None else f"{r.best_val_loss:.4f}",
                     "-" if r.tokens_per_sec is None else fmt.count(r.tokens_per_sec), r.device or "-",
                     fmt.ago(now - r.updated)) + ((r.target or "-",) if targets else ()))
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def main(args: list[str], out: TextIO | None = None) -> int:
    parser = Parser(prog="tuigpt runs", description="List the runs under --out_dir, newest first.")
    parser.add_argument("--out_dir", default="checkpoints", help="where runs live (default: checkpoints)")
    ns = parser.parse_args(args)
    out = out or sys.stdout
    if not Path(ns.out_dir).is_dir():
        raise UserError(f"{ns.out_dir}/ does not exist: no runs yet (or pick another --out_dir)")
    runs = []
    for run_dir in run_dirs(ns.out_dir):
        try:
            runs.append(summarize(run_dir, ping))
        except OSError:
            continue  # removed while we looked
    if not runs:
        print(f"no runs under {ns.out_dir}/", file=out)
        return 0
    print(format_table(runs), file=out)
    print(f"\nwatch one: tuigpt watch {runs[0].path}", file=out)
    return 0
