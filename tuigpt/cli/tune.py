"""`tuigpt tune CONFIG`: the fastest way to train the config's global batch on this machine.

Tune times every split whose accumulation stays reasonable, largest micro-batch first (one that runs out of memory
is reported as "does not fit"), with the dtype and compile setting the config resolves to; then, on the fastest
split, the other dtype and compile on/off (:mod:`tuigpt.cli.tuning`). This module is the command: arguments, the
table, the winner's --key=value line, --write and --apply.
"""

from __future__ import annotations

import datetime as _dt
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from tuigpt.cli.args import Parser, split_overrides
from tuigpt.cli.tuning import Row, Tuned, splits_of, tune
from tuigpt.run import fmt
from tuigpt.run.errors import UserError
from tuigpt.run.exits import EXIT_ERROR, EXIT_OK
from tuigpt.run.numbers import mfu, tokens_per_sec

TUNE_HELP = """\
usage: tuigpt tune CONFIG.yaml [--steps N] [--warmup W] [--rounds R] [--ranks N] [--only-splits]
                   [--write FILE] [--apply] [--key=value ...]

Find the fastest split of CONFIG's global batch on this machine. The global batch
(batch_size x gradient_accumulation_steps x ranks sequences) stays the same, so the
learning dynamics stay the same: only speed and memory change. Tries every micro-batch
/ accumulation split (largest micro-batch first; one that runs out of memory is
reported as "does not fit"), then the other dtype and compile on/off on the fastest
split, and prints ms/iter, tokens/s, MFU and memory of each, the winner, and the
--key=value line that trains with it.

  --steps N      timed optimizer steps a row (default 5)
  --warmup W     untimed steps first: allocation, autotuning, compile (default 2)
  --rounds R     time every row R times, alternating the order; the median counts, and a
                 row is called faster only beyond its round-to-round spread (default 2,
                 at least 2). A load that changed while timing (another process started
                 or stopped) is timed again once, then refused: no winner, nothing
                 written, exit 1
  --ranks N      split for N data-parallel ranks (torchrun / --nproc N): rows are timed
                 in this one process with one rank's share (default 1)
  --only-splits  time only the splits, in the dtype and compile setting the config resolves to
  --batch-sizes B1,B2,...  only these micro-batch sizes (each must divide the global batch)
  --write FILE   write CONFIG with the winning keys to FILE (comments kept): a new file, or
                 CONFIG itself to update it in place; another existing file is refused
  --apply        train with the winner right after (as `tuigpt CONFIG --key=value ...`)
  --key=value    override any config key first, as for training
  -h, --help     this help
"""


def report(tuned: Tuned, header: str, tokens_per_iter: int, ranks: int, out: TextIO) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(header)
    rows, base, winner = tuned.rows, tuned.base, tuned.winner
    cols = ["micro-batch", "accum", "dtype", "compile", "ms/iter", "tokens/s", "MFU", "memory", "first step",
            "vs config"]
    # one peak for every row, the first timed row's (the header names it): with each dtype's own peak, a slower
    # float32 row would show the higher MFU
    first = _first_result(rows)
    common = first.peak_flops if first is not None else None
    table = []
    for row in rows:
        s, r, ms = row.split, row.result, row.ms_per_iter
        mark = " (config)" if row is base else ""
        mark += "  <- fastest" if row is winner and row is not base else ""
        if ms is None or r is None:
            cells = [str(s.batch_size), str(s.accumulation), s.dtype, "on" if s.compile else "off",
                     row.failed or "n/a", "", "", "", "", ""]
        else:
            memory = (f"{fmt.size(r.gpu_max_bytes)} GPU" if r.gpu_max_bytes is not None
                      else f"{fmt.size(r.rss_bytes)} RSS")
            # tokens/s and MFU of the row's median round, the ms/iter shown beside them: one formula each
            speed = tokens_per_sec(tokens_per_iter, ms)
            cells = [str(s.batch_size), str(s.accumulation), s.dtype, "on" if s.compile else "off", f"{ms:.1f}",
                     f"{speed:,.0f}", fmt.mfu(mfu(r.flops_per_token, speed, common), short=True), memory,
                     fmt.ms(r.first_step_ms), _versus(row, base)]
        table.append((cells, mark))
    widths = [max(len(c), *(len(cells[i]) for cells, _ in table)) for i, c in enumerate(cols)]
    p("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for cells, mark in table:
        p("  ".join(c.rjust(w) for c, w in zip(cells, widths)) + mark)
    p("(vs config: the config's ms/iter over the row's, the median round ± half the range of the rounds"
      + (f"; the last {tuned.extra_rows} against the config timed again beside them)" if tuned.extra_rows else ")"))
    if ranks > 1:
        p(f"(timed in one process with one rank's share of {ranks}: tokens/s is per rank x {ranks}, "
          f"communication not included)")


def _versus(row: Row, base: Row) -> str:
    if row is base:
        return "1.00x"
    if row.versus is None or row.versus.speedup is None:
        return "n/a"
    return row.versus.describe().split(" over ")[0]


def winner_args(winner: Row, base: Row) -> list[str]:
    """The --key=value overrides that turn the config into the winner (only what differs)."""
    return [f"--{k}={v}" for k, v in winner.split.overrides().items() if base.split.overrides()[k] != v]


def check_write_target(source: str, target: str) -> None:
    """--write edits a YAML config's text: into a new file, or into CONFIG itself (asked for by naming it);
    another file that exists is never overwritten, and a .py config is not YAML."""
    if Path(source).suffix == ".py" or Path(target).suffix == ".py":
        raise UserError(f"--write {target}: tune writes YAML configs; for a .py config, add the --key=value "
                        f"line it prints to your command")
    if Path(target).exists() and Path(target).resolve() != Path(source).resolve():
        raise UserError(f"--write {target}: that file already exists and tune never overwrites it; name a new file, "
                        f"or {source} itself to update it in place")


def write_config(source: str, target: str, keys: dict[str, str]) -> None:
    """CONFIG's text with ``keys`` set: existing lines edited in place (comments kept), missing keys appended."""
    from tuigpt.run.files import atomic_write, read_user_text

    text = read_user_text(Path(source), "config file", "pass a YAML config file")
    for key, value in keys.items():
        pattern = re.compile(rf"^{re.escape(key)}\s*:[^#\n]*(#.*)?$", re.M)
        line = f"{key}: {value}"
        if pattern.search(text):
            text = pattern.sub(lambda m: line + (f"  {m.group(1)}" if m.group(1) else ""), text, count=1)
        else:
            text = text.rstrip("\n") + f"\n{line}  # tuigpt tune\n"
    atomic_write(Path(target), text.encode())


def main(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(TUNE_HELP, end="")
        return 0
    parser = Parser(prog="tuigpt tune", add_help=False, allow_abbrev=False)
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--write", default=None)
    parser.add_argument("--apply", action="store_true")
    parser.add_argument("--only-splits", action="store_true")
    parser.add_argument("--batch-sizes", default=None)
    ns, rest = parser.parse_known_args(args)
    if ns.config.startswith("--"):
        raise UserError(f"the first argument must be a config file, not {ns.config!r} "
                        f"(e.g. tuigpt tune configs/train_cpu_optimized.yaml)")
    for name in ("steps", "rounds", "ranks"):
        if getattr(ns, name) < 1:
            raise UserError(f"--{name} must be a positive integer, not {getattr(ns, name)}")
    if ns.warmup < 0:
        raise UserError(f"--warmup must be 0 or more, not {ns.warmup}")
    if ns.rounds < 2:
        raise UserError(f"--rounds must be at least 2, not {ns.rounds}: a row is called faster only beyond the "
                        f"round-to-round spread, which one round cannot measure")
    if ns.write:
        check_write_target(ns.config, ns.write)  # before minutes of timing, not after

    from tuigpt.run.configfile import load_config

    overrides = split_overrides(rest, parser.options())
    config = load_config(ns.config, overrides)
    if config.gradient_accumulation_steps % ns.ranks:
        raise UserError(f"gradient_accumulation_steps={config.gradient_accumulation_steps} is not divisible by "
                        f"--ranks {ns.ranks}: use a multiple of {ns.ranks}")
    sequences = config.batch_size * config.gradient_accumulation_steps
    sizes = _batch_sizes(ns.batch_sizes, sequences, ns.ranks) if ns.batch_sizes else None
    tuned = tune(ns.config, overrides, config, ns.steps, ns.warmup, ns.rounds, ns.ranks, ns.only_splits, sizes)
    tokens = sequences * config.block_size
    now = _dt.datetime.now()
    header = (f"tuigpt tune {ns.config}" + (f" {' '.join(rest)}" if rest else "") + f" · {now:%Y-%m-%d %H:%M}\n"
              f"global batch {sequences} sequences x {config.block_size} tokens = {tokens:,} tokens/iter, kept in "
              f"every row: the same learning dynamics, only speed and memory change\n"
              f"{_where(tuned.rows)} · {ns.steps} timed steps a row after {ns.warmup} warm-up, median of "
              f"{ns.rounds} alternating rounds · MFU of every row against {_peak(tuned.rows)}")
    report(tuned, header, tokens, ns.ranks, sys.stdout)
    for changed in tuned.retimed:
        print(f"the machine's load changed while timing ({changed.describe()}): those rows were timed again")
    if tuned.load is not None:
        print(f"no winner: the machine's load changed while timing, twice ({tuned.load.describe()}), so the rows "
              f"above mix a quiet and a busy machine; nothing written. Run tune again when the machine is steady "
              f"(no other training, build or benchmark beside it)")
        return EXIT_ERROR
    winner, base = tuned.winner, tuned.base
    if winner is None:
        print("nothing ran: no split fits in memory here (lower block_size or the model size)")
        return EXIT_ERROR
    line = winner_args(winner, base)
    if not line:
        closest = max((r for r in tuned.rows if r.versus is not None and r.versus.speedup is not None),
                      key=lambda r: r.versus.speedup or 0.0, default=None)  # type: ignore[union-attr]
        print("fastest: the config as written" + (
            f" (no row beat it beyond the round-to-round spread; the closest, {closest.describe()}: "
            f"{closest.versus.why_not()})" if closest is not None and closest.versus is not None else ""))
    else:
        vs = f" ({winner.versus.describe()} the config as written)" if winner.versus is not None else (
            " (the config as written does not fit)")
        print(f"fastest: {' '.join(line)}{vs}")
        print(f"train with it: tuigpt {ns.config} {' '.join([*rest, *line])}")
    if ns.write:
        write_config(ns.config, ns.write, {k.lstrip("-").split("=")[0]: k.split("=", 1)[1] for k in line})
        print(f"wrote {ns.write}: {ns.config} with the fastest keys")
    if ns.apply:
        from tuigpt.cli.train import main as train_main

        sys.stdout.flush()
        return train_main([ns.config, *rest, *line])
    return EXIT_OK


def _batch_sizes(text: str, sequences: int, ranks: int) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",")]
    except ValueError:
        raise UserError(f"--batch-sizes {text!r} must be a comma list of integers, e.g. 32,16,8") from None
    valid = {b for b, _ in splits_of(sequences, ranks)}
    bad = [b for b in sizes if b not in valid]
    if bad:
        raise UserError(f"--batch-sizes: {bad[0]} does not split the global batch of {sequences} sequences over "
                        f"{ranks} rank(s); choose from {', '.join(map(str, sorted(valid, reverse=True)))}")
    return sizes


def _first_result(rows: list[Row]) -> Any:
    """The first row that ran: its device, threads and peak describe the table."""
    return next((row.result for row in rows if row.result is not None), None)


def _where(rows: list[Row]) -> str:
    r = _first_result(rows)
    return f"{r.device} · {r.threads} thread{'s' if r.threads != 1 else ''}" if r is not None else "no row ran"


def _peak(rows: list[Row]) -> str:
    r = _first_result(rows)
    return r.peak_label if r is not None else "n/a"
