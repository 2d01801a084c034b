"""`tuigpt report [RUN_DIR|NAME] [--out DIR]`: a run for the morning, as a Markdown file with PNG charts beside it.

What the night did, from the run's metrics.jsonl alone (a finished, stopped, crashed or still running run): how it
ended and where its best checkpoint is; the loss, learning-rate and speed curves (PNG, drawn by
:mod:`tuigpt.ui.png_chart`: no plotting library); every eval; where the time went, session by session (training,
evals, checkpoints, the rest, and the gaps between sessions); and the samples, eval by eval. Written into
RUN_DIR/report/ (report.md, loss.png, lr.png, speed.png), replacing an earlier report there and nothing else.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuigpt.cli.args import Parser
from tuigpt.cli.runs import alive
from tuigpt.run import fmt
from tuigpt.run.errors import UserError
from tuigpt.run.files import atomic_write
from tuigpt.run.metrics_log import load_history, loads, record_type
from tuigpt.run.numbers import Ema
from tuigpt.run.rundir import RunDir, resolve_run_dir
from tuigpt.run.status import summarize

MAX_SAMPLES = 30  # samples shown: the first, the last and an even spread between (how many were left out is said)
MAX_EVAL_ROWS = 40  # eval table rows, likewise
TRAIN_RAW, TRAIN_EMA, VAL, LR, SPEED = (168, 200, 232), (31, 100, 180), (230, 110, 20), (60, 150, 60), (31, 100, 180)
FILES = ("report.md", "loss.png", "lr.png", "speed.png")


@dataclass
class Session:
    """One start of the run (a resume starts another) and how it went."""

    start: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ending(self) -> dict[str, Any] | None:
        return next((r for r in reversed(self.records) if r.get("type") in ("finish", "failed")), None)

    @property
    def end_time(self) -> float:
        return float(self.records[-1]["time"]) if self.records else float(self.start["time"])

    def train_at_end(self, before: float) -> float:
        """Training seconds of the whole run when this session ended (they are counted across resumes)."""
        ending = self.ending
        if ending is not None and isinstance(ending.get("train_seconds"), (int, float)):
            return float(ending["train_seconds"])
        iters = [r for r in self.records if r.get("type") == "iter"]
        return float(iters[-1].get("train_seconds", before)) if iters else before

    def seconds_of(self, kind: str, key: str, before: float = 0.0) -> float:
        """This session's eval or checkpoint seconds: an ending with session_seconds counts the run's (``before``:
        the run's at the previous session's end), an older one this session's; else its records summed."""
        ending = self.ending
        if ending is not None and isinstance(ending.get(key), (int, float)):
            return float(ending[key]) - (before if "session_seconds" in ending else 0.0)
        return sum(float(r.get("seconds", 0.0)) for r in self.records if r.get("type") == kind)


def main(args: list[str]) -> int:
    parser = Parser(prog="tuigpt report", description="Write a run's report for the morning: a Markdown file with "
                    "its loss, learning-rate and speed charts (PNG), every eval, where the time went and the samples "
                    "eval by eval.")
    parser.add_argument("run_dir", nargs="?", default=None, help="the run's directory or name (default: the most "
                        "recently updated of your runs)")
    parser.add_argument("--out", default=None, help="folder to write into (default: RUN_DIR/report)")
    parser.add_argument("--out_dir", default=None, help="look for the run only under this directory")
    ns = parser.parse_args(args)
    run_dir = resolve_run_dir(ns.run_dir, ns.out_dir)
    out = Path(ns.out) if ns.out else run_dir / "report"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: name a folder (the report is report.md and its PNGs in it)")
    files = build_report(run_dir)
    try:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, data in files.items():
            atomic_write(out / name, data)
    except OSError as exc:
        raise UserError(f"cannot write the report into {out} ({exc.strerror or exc}): name another folder with "
                        f"--out") from None
    charts = sum(name.endswith(".png") for name in files)
    print(f"wrote {out / 'report.md'} and {charts} chart{'s' * (charts != 1)} beside it (open it in any Markdown "
          f"viewer: VS Code, GitHub, `glow`, a browser extension)")
    return 0


# ---------------------------------------------------------------- reading


def sessions_of(records: list[dict[str, Any]]) -> list[Session]:
    sessions: list[Session] = []
    for record in records:
        if record.get("type") == "start":
            sessions.append(Session(record))
        elif sessions:
            sessions[-1].records.append(record)
    return sessions


def samples_of(path: Path) -> list[dict[str, Any]]:
    """Every sample record, read without parsing the other lines (a million-line file costs seconds, not minutes)."""
    found = []
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.endswith(b"\n") and record_type(line) == b"sample" and (record := loads(line)) is not None:
                    found.append(record)
    except OSError:
        return []
    return found


def spread(items: list[Any], limit: int) -> tuple[list[Any], int]:
    """At most ``limit`` items: the first, the last and an even spread between; and how many were left out."""
    if len(items) <= limit:
        return items, 0
    picks = sorted({round(k * (len(items) - 1) / (limit - 1)) for k in range(limit)})
    return [items[k] for k in picks], len(items) - len(picks)


# ---------------------------------------------------------------- writing


def build_report(run_dir: Path) -> dict[str, bytes]:
    """report.md and its charts, by file name."""
    from tuigpt.ui.png_chart import Series, line_chart

    metrics = RunDir(run_dir).metrics
    records = load_history(metrics)
    sessions = sessions_of(records)
    if not sessions:
        raise UserError(f"{metrics} holds no run start yet: nothing to report (is the run still setting up?)")
    start = sessions[-1].start
    iters = [r for r in records if r.get("type") == "iter"]
    evals = [r for r in records if r.get("type") == "eval"]
    lines = _header(run_dir, sessions, evals)
    files: dict[str, bytes] = {}
    if iters:
        ema, smooth, before = Ema(), [], None
        for r in iters:  # decayed per iteration, as on the monitor's chart, whatever the log interval
            smooth.append(ema.update(float(r["loss"]), int(r["iter"]) - before if before is not None else 1))
            before = int(r["iter"])
        xs = [float(r["iter"]) for r in iters]
        files["loss.png"] = line_chart([
            Series(xs, [float(r["loss"]) for r in iters], TRAIN_RAW),
            Series(xs, smooth, TRAIN_EMA),
            Series([float(r["iter"]) for r in evals], [float(r["val_loss"]) for r in evals], VAL),
            Series([float(r["iter"]) for r in evals], [float(r["val_loss"]) for r in evals], VAL, "dots")])
        lrs, speeds = [float(r["lr"]) for r in iters], [float(r["tokens_per_sec"]) for r in iters]
        # from 0: a rate drawn from its minimum makes a 10% dip look like a collapse
        files["lr.png"] = line_chart([Series(xs, lrs, LR)], y_range=(0.0, max(lrs) * 1.05 or 1.0))
        files["speed.png"] = line_chart([Series(xs, speeds, SPEED)], y_range=(0.0, max(speeds) * 1.05 or 1.0))
        lines += ["## Loss", "", "![loss against iteration](loss.png)", "",
                  "Light blue: the train loss of every logged iteration; dark blue: its moving average (EMA, "
                  "β 0.95, as on the monitor's chart); orange: the val loss at each eval. x: iteration.", ""]
    else:
        lines += ["## Loss", "", "No iteration logged yet.", ""]
    lines += _eval_table(evals)
    if iters:
        lines += ["## Learning rate and speed", "", "![learning rate against iteration](lr.png)", "",
                  "The learning rate of every logged iteration (warmup, then the schedule's decay).", "",
                  "![tokens per second against iteration](speed.png)", "",
                  f"Tokens per second of every logged iteration ({fmt.count(start.get('tokens_per_iter'))} tokens an "
                  f"iteration): a dip is the machine doing something else, a step is a resume on other hardware.", ""]
    lines += _time_table(sessions)
    lines += _samples(samples_of(metrics), evals, start)
    lines += [f"*Written by `tuigpt report` on {fmt.stamp(time.time())} from {metrics}.*", ""]
    files["report.md"] = "\n".join(lines).encode()
    return {name: files[name] for name in FILES if name in files}


def _header(run_dir: Path, sessions: list[Session], evals: list[dict[str, Any]]) -> list[str]:
    start, ending = sessions[-1].start, sessions[-1].ending
    config = start.get("config") or {}
    last_iter = max([int(r["iter"]) for s in sessions for r in s.records if isinstance(r.get("iter"), int)],
                    default=int(start.get("start_iter", 0)))
    summary = summarize(run_dir, alive)  # what `tuigpt runs` says of it: the iterations it ends at, its plan
    of = f" of {summary.max_iters:,}" if summary.max_iters else ""
    if ending is None:
        state = f"not finished: iteration {last_iter:,}{of} when last written (still running, or its process " \
                f"ended without a last word: `tuigpt runs` tells which)"
    elif ending["type"] == "failed":
        state = f"failed at iteration {ending['iter']:,}: {ending.get('message', '')}"
    else:
        state = f"{ending.get('reason', 'done')} at iteration {ending['iter']:,}{of}"
    best = min((r for r in evals if isinstance(r.get("val_loss"), float) and math.isfinite(r["val_loss"])),
               key=lambda r: r["val_loss"], default=None)
    best_text = f"{best['val_loss']:.4f} at iteration {best['iter']:,}" if best else "no eval yet"
    first, last = sessions[0].start["time"], sessions[-1].end_time
    rows = [("state", state)]
    end = (f"--time {config['time_budget']}" if config.get("time_budget") else
           f"--until {config['deadline']}" if config.get("deadline") else None)
    if end is not None:  # a run that ends at a time: how it ended against it, and the model before its cooldown
        cooldown = [r for s in sessions for r in s.records if r.get("type") == "plan" and r.get("cooldown_begun")]
        rows.append(("planned", f"{end}: {summary.plan or 'no plan yet'}" + (
            f"; cooldown from iteration {cooldown[-1]['cooldown_iter']:,}" if cooldown and
            isinstance(cooldown[-1].get("cooldown_iter"), int) else "") + (
            f"; `{run_dir / 'stable.pt'}` is the model where it began (`--resume --time T` goes on from it)"
            if (run_dir / "stable.pt").exists() else "")))
    rows += [
        ("best val loss", best_text + (f" (`{run_dir / 'best.pt'}`)" if (run_dir / "best.pt").exists() else "")),
        ("when", f"{fmt.stamp(first)} → {fmt.stamp(last)} ({fmt.duration(last - first)}, {len(sessions)} "
                 f"session{'s' * (len(sessions) != 1)})"),
        ("model", f"{fmt.count(start.get('n_params'))} params: {config.get('n_layer')} layers × {config.get('n_embd')}, "
                  f"context {config.get('block_size')}"),
        ("data", f"{config.get('dataset')}, {fmt.count(start.get('tokens_per_iter'))} tokens an iteration"),
        ("device", f"{start.get('device')}, {start.get('dtype')} ({start.get('dtype_reason', '')})"),
        ("run folder", f"`{run_dir}`"),
    ]
    return [f"# {start.get('run_name', run_dir.name)}", "", "| | |", "|---|---|",
            *(f"| {k} | {v.replace('|', '/')} |" for k, v in rows), ""]


def _eval_table(evals: list[dict[str, Any]]) -> list[str]:
    if not evals:
        return []
    shown, left_out = spread(evals, MAX_EVAL_ROWS)
    lines = ["### Evals", "", "| iteration | train loss | val loss | |", "|---:|---:|---:|---|"]
    for r in shown:
        lines.append(f"| {r['iter']:,} | {r['train_loss']:.4f} | {r['val_loss']:.4f} | "
                     f"{'best so far' if r.get('is_best') else ''} |")
    if left_out:
        lines.append(f"\n({left_out} evals between these left out: `metrics.jsonl` has every one.)")
    return lines + [""]


def _time_table(sessions: list[Session]) -> list[str]:
    lines = ["## Where the time went", "", "| session | started | wall | training | evals | checkpoints | the rest | "
             "before it |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    totals = [0.0] * 5
    train_before, previous_end, evals_before, checkpoints_before = 0.0, None, 0.0, 0.0
    for k, s in enumerate(sessions, 1):
        wall = max(0.0, s.end_time - float(s.start["time"]))
        train_end = s.train_at_end(train_before)
        train = max(0.0, train_end - train_before)
        evals = max(0.0, s.seconds_of("eval", "eval_seconds", evals_before))
        checkpoints = max(0.0, s.seconds_of("checkpoint", "checkpoint_seconds", checkpoints_before))
        evals_before, checkpoints_before = evals_before + evals, checkpoints_before + checkpoints
        rest = max(0.0, wall - train - evals - checkpoints)
        gap = float(s.start["time"]) - previous_end if previous_end is not None else None
        for i, v in enumerate((wall, train, evals, checkpoints, rest)):
            totals[i] += v
        lines.append(f"| {k}{' (resumed)' if s.start.get('resumed') else ''} | {fmt.stamp(s.start['time'])} | "
                     f"{fmt.duration(wall)} | {fmt.duration(train)} | {fmt.duration(evals)} | "
                     f"{fmt.duration(checkpoints)} | {fmt.duration(rest)} | "
                     f"{fmt.duration(gap) + ' not running' if gap is not None else ''} |")
        train_before, previous_end = train_end, s.end_time
    if len(sessions) > 1:
        lines.append("| all | | " + " | ".join(f"**{fmt.duration(v)}**" for v in totals) + " | |")
    wall = totals[0]
    share = (lambda v: f"{v / wall:.0%}") if wall > 0 else (lambda v: "n/a")  # noqa: E731
    lines += ["", f"Training {share(totals[1])} of the wall-clock time the run was up, evals {share(totals[2])}, "
              f"checkpoints {share(totals[3])}; the rest is set-up (data, model, dtype/compile trials), samples and "
              f"pauses. A session ends where its last record was written.", ""]
    return lines


def _samples(samples: list[dict[str, Any]], evals: list[dict[str, Any]], start: dict[str, Any]) -> list[str]:
    lines = ["## Samples", ""]
    if not samples:
        return lines + ["No samples: set `sample_every_eval: true` to get one at every eval, from the same prompt "
                        "and seed so that only the model changes (or press `s` in the monitor).", ""]
    val_at = {int(r["iter"]): float(r["val_loss"]) for r in evals}
    timeline = [r for r in samples if r.get("timeline")]
    what = ("eval by eval, from the same prompt and seed: only the model changes" if timeline
            else "as they were asked for")
    shown, left_out = spread(samples, MAX_SAMPLES)
    lines += [f"{len(samples)} sample{'s' * (len(samples) != 1)}, {what}"
              + (f"; {left_out} left out between the first and the last" if left_out else "") + ".", ""]
    for r in shown:
        val = f", val loss {val_at[int(r['iter'])]:.4f}" if int(r["iter"]) in val_at else ""
        text = f"{r.get('prompt', '') if str(r.get('prompt', '')).strip() else ''}{r.get('text', '')}"
        fence = "`" * max(3, _longest_backticks(text) + 1)
        lines += [f"### iteration {int(r['iter']):,}{val}", "", f"{fence}text", text.rstrip("\n"), fence, ""]
    return lines


def _longest_backticks(text: str) -> int:
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return longest
