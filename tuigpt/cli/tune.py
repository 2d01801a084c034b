"""`tuigpt tune CONFIG`: the fastest way to train the config's global batch on this machine.

The global batch (batch_size x gradient_accumulation_steps x ranks sequences of block_size tokens) fixes the
learning dynamics; how it is split into micro-batches only changes speed and memory. Tune times every split whose
accumulation stays reasonable, largest micro-batch first (one that runs out of memory is reported as "does not
fit"), with the dtype and compile setting the config resolves to; then, on the fastest split, the other dtype and
compile on/off. Each row is `tuigpt bench` on a disposable trainer: warm-up steps, then timed optimizer steps.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from tuigpt.cli.args import Parser, split_overrides
from tuigpt.run import fmt
from tuigpt.run.errors import UserError

MAX_ACCUMULATION = 16  # more micro-steps than this per optimizer step only ever adds per-step overhead

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
  --rounds R     time every row R times, alternating the order; the median counts (default 1)
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


@dataclass(frozen=True)
class Split:
    batch_size: int  # sequences per micro-batch
    accumulation: int  # gradient_accumulation_steps (all ranks together)
    dtype: str
    compile: bool

    def overrides(self) -> dict[str, str]:
        return {"batch_size": str(self.batch_size), "gradient_accumulation_steps": str(self.accumulation),
                "dtype": self.dtype, "compile": "true" if self.compile else "false"}


@dataclass
class Row:
    split: Split
    ms: list[float] = field(default_factory=list)  # mean ms/iter of each round
    result: Any = None  # the last BenchResult
    failed: str | None = None  # "does not fit", or what went wrong

    @property
    def ms_per_iter(self) -> float | None:
        return statistics.median(self.ms) if self.ms else None


def splits_of(global_sequences: int, ranks: int) -> list[tuple[int, int]]:
    """(micro-batch, accumulation) pairs that make ``global_sequences`` with accumulation divisible by the ranks,
    largest micro-batch first."""
    out = []
    for accumulation in range(1, global_sequences + 1):
        if global_sequences % accumulation or accumulation % ranks or accumulation // ranks > MAX_ACCUMULATION:
            continue
        out.append((global_sequences // accumulation, accumulation))
    return out


def time_row(config_path: str, overrides: dict[str, str], row: Row, ranks: int, steps: int, warmup: int,
             tmp: str, index: int) -> None:
    """Time one row (a round); records "does not fit" on running out of memory instead of raising."""
    from tuigpt.cli.bench import bench_config
    from tuigpt.engine.trial import failure_text
    from tuigpt.run.configfile import load_config

    values = dict(overrides, **row.split.overrides(), out_dir=tmp, run_name=f"tune{index}_{len(row.ms)}",
                  telemetry_interval="0")
    values["gradient_accumulation_steps"] = str(row.split.accumulation // ranks)  # one rank's share, timed here
    config = load_config(config_path, values)
    from tuigpt.engine.device import forget_compiled

    forget_compiled()  # each row compiles afresh: no stale graphs, no recompile limit reached across rows
    try:
        result = bench_config(config, steps=steps, warmup=warmup, quiet=True)
    except UserError as exc:
        if "needs at least" not in str(exc):
            raise
        row.failed = "does not fit (estimate)"
        return
    except Exception as exc:  # noqa: BLE001 - out of memory (or a compile failure) marks the row, not the tune
        row.failed = failure_text(exc)
        _release()
        return
    row.ms.append(result.mean_ms)
    row.result = result


def _release() -> None:
    import gc

    from tuigpt.engine.device import release_memory

    gc.collect()
    release_memory()


def report(rows: list[Row], base: Row, winner: Row | None, header: str, tokens_per_iter: int, ranks: int,
           out: TextIO) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(header)
    cols = ["micro-batch", "accum", "dtype", "compile", "ms/iter", "tokens/s", "MFU", "memory", "first step", "vs config"]
    # one peak for every row, the first timed row's (the header names it): with each dtype's own peak, a slower
    # float32 row would show the higher MFU
    first = _first_result(rows)
    common = first.peak_flops if first is not None else None
    table = []
    for row in rows:
        s, r, ms = row.split, row.result, row.ms_per_iter
        mark = " (config)" if row is base else ""
        mark += "  <- fastest" if row is winner else ""
        if ms is None or r is None:
            cells = [str(s.batch_size), str(s.accumulation), s.dtype, "on" if s.compile else "off",
                     row.failed or "n/a", "", "", "", "", ""]
        else:
            memory = (f"{fmt.size(r.gpu_max_bytes)} GPU" if r.gpu_max_bytes is not None
                      else f"{fmt.size(r.rss_bytes)} RSS")
            vs = f"{base.ms_per_iter / ms:.2f}x" if base.ms_per_iter else "n/a"
            cells = [str(s.batch_size), str(s.accumulation), s.dtype, "on" if s.compile else "off", f"{ms:.1f}",
                     f"{tokens_per_iter / (ms / 1000.0):,.0f}", fmt.mfu(_on_peak(r, common), short=True), memory,
                     fmt.ms(r.first_step_ms), vs]
        table.append((cells, mark))
    widths = [max(len(c), *(len(cells[i]) for cells, _ in table)) for i, c in enumerate(cols)]
    p("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for cells, mark in table:
        p("  ".join(c.rjust(w) for c, w in zip(cells, widths)) + mark)
    if ranks > 1:
        p(f"(timed in one process with one rank's share of {ranks}: tokens/s is per rank x {ranks}, "
          f"communication not included)")


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
    parser.add_argument("--rounds", type=int, default=1)
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
    if ns.write:
        check_write_target(ns.config, ns.write)  # before minutes of timing, not after

    from tuigpt.run.configfile import load_config

    overrides = split_overrides(rest)
    config = load_config(ns.config, overrides)
    if config.gradient_accumulation_steps % ns.ranks:
        raise UserError(f"gradient_accumulation_steps={config.gradient_accumulation_steps} is not divisible by "
                        f"--ranks {ns.ranks}: use a multiple of {ns.ranks}")
    sequences = config.batch_size * config.gradient_accumulation_steps
    sizes = _batch_sizes(ns.batch_sizes, sequences, ns.ranks) if ns.batch_sizes else None
    rows, base, winner = tune(ns.config, overrides, config, ns.steps, ns.warmup, ns.rounds, ns.ranks,
                              ns.only_splits, sizes)
    tokens = sequences * config.block_size
    now = _dt.datetime.now()
    header = (f"tuigpt tune {ns.config}" + (f" {' '.join(rest)}" if rest else "") + f" · {now:%Y-%m-%d %H:%M}\n"
              f"global batch {sequences} sequences x {config.block_size} tokens = {tokens:,} tokens/iter, kept in "
              f"every row: the same learning dynamics, only speed and memory change\n"
              f"{_where(rows)} · {ns.steps} timed steps a row after {ns.warmup} warm-up, median of {ns.rounds} "
              f"round(s) · MFU of every row against {_peak(rows)}")
    report(rows, base, winner, header, tokens, ns.ranks, sys.stdout)
    if winner is None:
        print("nothing ran: no split fits in memory here (lower block_size or the model size)")
        return 1
    line = winner_args(winner, base)
    speedup = base.ms_per_iter / winner.ms_per_iter if base.ms_per_iter and winner.ms_per_iter else None
    if not line:
        print("fastest: the config as written")
    else:
        print(f"fastest: {' '.join(line)}" + (f" ({speedup:.2f}x the config as written)" if speedup else ""))
        print(f"train with it: tuigpt {ns.config} {' '.join([*rest, *line])}")
    if ns.write:
        write_config(ns.config, ns.write, {k.lstrip("-").split("=")[0]: k.split("=", 1)[1] for k in line})
        print(f"wrote {ns.write}: {ns.config} with the fastest keys")
    if ns.apply:
        from tuigpt.cli.train import main as train_main

        sys.stdout.flush()
        return train_main([ns.config, *rest, *line])
    return 0


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


def tune(config_path: str, overrides: dict[str, str], config: Any, steps: int, warmup: int, rounds: int,
         ranks: int, only_splits: bool = False, sizes: list[int] | None = None) -> tuple[list[Row], Row, Row | None]:
    """Every row timed: the splits first, then dtype and compile on the fastest; (rows, the config's, fastest)."""
    from tuigpt.cli.bench import Progress
    from tuigpt.engine.build import resolved_choices

    choice = resolved_choices(config)  # what dtype/compile auto pick for the config as written (measured, cached)
    dtype, compiled = choice.dtype, choice.compiled
    base_split = Split(config.batch_size, config.gradient_accumulation_steps, dtype, compiled)
    splits = [Split(b, a, dtype, compiled) for b, a in splits_of(config.batch_size * config.gradient_accumulation_steps,
                                                                   ranks) if sizes is None or b in sizes]
    rows = [Row(s) for s in ([] if base_split in splits else [base_split]) + splits]
    progress = Progress("tune", len(rows) * rounds, sys.stderr)
    done = itertools.count(1)
    with tempfile.TemporaryDirectory(prefix="tuigpt-tune-") as tmp:
        _time_all(config_path, overrides, rows, ranks, steps, warmup, rounds, tmp, lambda: progress.update(next(done)))
        fits = [r for r in rows if r.ms_per_iter is not None]
        if fits and not only_splits:
            best = min(fits, key=lambda r: r.ms_per_iter or 0.0).split
            dtypes = dict.fromkeys([dtype, "float32", *([choice.low_precision] if choice.low_precision else [])])
            compiles = dict.fromkeys([compiled, not compiled] if choice.can_compile else [compiled])
            extra = [Split(best.batch_size, best.accumulation, d, c) for d in dtypes for c in compiles]
            more = [Row(s) for s in extra if s not in {r.split for r in rows}]
            progress.total += len(more) * rounds
            _time_all(config_path, overrides, more, ranks, steps, warmup, rounds, tmp,
                      lambda: progress.update(next(done)))
            rows += more
    progress.close("done")
    base = next(r for r in rows if r.split == base_split)
    fits = [r for r in rows if r.ms_per_iter is not None]
    winner = min(fits, key=lambda r: r.ms_per_iter or 0.0) if fits else None
    return rows, base, winner


def _time_all(config_path: str, overrides: dict[str, str], rows: list[Row], ranks: int, steps: int, warmup: int,
              rounds: int, tmp: str, tick: Callable[[], None]) -> None:
    """Every row once a round, the order reversed every other round so slow spells hit rows alike."""
    for r in range(rounds):
        for row in rows if r % 2 == 0 else rows[::-1]:
            if row.failed is None:
                time_row(config_path, overrides, row, ranks, steps, warmup, tmp, rows.index(row))
            tick()


def _first_result(rows: list[Row]) -> Any:
    """The first row that ran: its device, threads and peak describe the table."""
    return next((row.result for row in rows if row.result is not None), None)


def _where(rows: list[Row]) -> str:
    r = _first_result(rows)
    return f"{r.device} · {r.threads} thread{'s' if r.threads != 1 else ''}" if r is not None else "no row ran"


def _on_peak(result: Any, common: float | None) -> float | None:
    """A row's MFU against the common peak: its achieved FLOP/s (its MFU × its own peak) over that peak."""
    if result.mfu is None or not result.peak_flops or not common:
        return None
    return result.mfu * result.peak_flops / common


def _peak(rows: list[Row]) -> str:
    r = _first_result(rows)
    return r.peak_label if r is not None else "n/a"
