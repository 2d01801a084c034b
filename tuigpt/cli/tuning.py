"""The timing behind `tuigpt tune`: every micro-batch / accumulation split of a config's global batch (then dtype
and compile on the fastest), timed in alternating rounds, and the winner, if the rounds can name one.

The global batch (batch_size x gradient_accumulation_steps x ranks sequences of block_size tokens) fixes the
learning dynamics; how it is split into micro-batches only changes speed and memory. Each row is `tuigpt bench`
on a disposable trainer (:func:`tuigpt.cli.timing.bench_config`): warm-up steps, then timed optimizer steps, with
the load other processes put on our CPUs meanwhile. Every row is timed once a round, the order reversed every
other round. A row is declared faster than the config only beyond the round-to-round spread of its speed-up, and
only when the load held steady; a load that changed during the rounds (another process started or stopped) has
them timed again once, and a second change refuses to name a winner (:mod:`tuigpt.run.rounds`: a split once
written at "9.49x" on a machine whose other load stopped halfway was 0.61x timed again idle).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

from tuigpt.run.errors import UserError
from tuigpt.run.rounds import LoadChange, Verdict, load_change, paired_ratios
from tuigpt.telemetry.load import MIN_WINDOW_SECONDS, LoadMeter

MAX_ACCUMULATION = 16  # more micro-steps than this per optimizer step only ever adds per-step overhead

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
    loads: list[float | None] = field(default_factory=list)  # per round: other processes' share of our CPUs
    stretches: list[float | None] = field(default_factory=list)  # per round: the slowdown waiting for a CPU
    result: Any = None  # the last BenchResult
    failed: str | None = None  # "does not fit", or what went wrong
    versus: Verdict | None = None  # against the config as written, timed in the same rounds
    cpus: int = 1  # how many CPUs the load shares are of

    @property
    def ms_per_iter(self) -> float | None:
        return statistics.median(self.ms) if self.ms else None

    def describe(self) -> str:
        s = self.split
        return f"batch {s.batch_size} x {s.accumulation}, {s.dtype}, compile {'on' if s.compile else 'off'}"


@dataclass
class Tuned:
    """What tune found: every row, the config's, the winner (the config itself when nothing beat it beyond the
    spread; None when nothing fits or the load changed twice), and the load changes it saw."""

    rows: list[Row]
    base: Row
    winner: Row | None
    load: LoadChange | None = None  # the rounds were disturbed twice: no winner
    retimed: list[LoadChange] = field(default_factory=list)
    extra_rows: int = 0  # the dtype/compile rows at the end, timed in a second set of rounds with the config again


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
    """Time one row (a round); records "does not fit" on running out of memory instead of raising. The load of
    other processes is read over the whole row, building the trainer included: what others do does not depend on
    what this process does meanwhile, and a window of a second reads it far better than 5 short steps could."""
    from tuigpt.cli.timing import bench_config
    from tuigpt.engine.trial import failure_text
    from tuigpt.run.configfile import load_config

    values = dict(overrides, **row.split.overrides(), out_dir=tmp, run_name=f"tune{index}_{len(row.ms)}",
                  telemetry_interval="0")
    values["gradient_accumulation_steps"] = str(row.split.accumulation // ranks)  # one rank's share, timed here
    config = load_config(config_path, values)
    from tuigpt.engine.device import forget_compiled

    forget_compiled()  # each row compiles afresh: no stale graphs, no recompile limit reached across rows
    meter = LoadMeter()
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
    load = meter.stop(MIN_WINDOW_SECONDS)
    row.ms.append(result.mean_ms)
    row.loads.append(load.others if load is not None else None)
    row.stretches.append(load.stretch if load is not None else None)
    row.cpus = load.cpus if load is not None else row.cpus
    row.result = result


def _release() -> None:
    import gc

    from tuigpt.engine.device import release_memory

    gc.collect()
    release_memory()


def tune(config_path: str, overrides: dict[str, str], config: Any, steps: int, warmup: int, rounds: int,
         ranks: int, only_splits: bool = False, sizes: list[int] | None = None) -> Tuned:
    """Every row timed: the splits first, then dtype and compile on the fastest split, with the config timed again
    beside them (every speed-up is measured within one set of alternating rounds)."""
    from tuigpt.cli.timing import Progress
    from tuigpt.engine.build import resolved_choices

    choice = resolved_choices(config)  # what dtype/compile auto pick for the config as written (measured, cached)
    dtype, compiled = choice.dtype, choice.compiled
    base_split = Split(config.batch_size, config.gradient_accumulation_steps, dtype, compiled)
    splits = [Split(b, a, dtype, compiled) for b, a in splits_of(config.batch_size * config.gradient_accumulation_steps,
                                                                   ranks) if sizes is None or b in sizes]
    rows = [Row(s) for s in ([] if base_split in splits else [base_split]) + splits]
    base = next(r for r in rows if r.split == base_split)
    progress = Progress("tune", len(rows) * rounds, sys.stderr, lines=True)
    done = 0
    tuned = Tuned(rows, base, None)

    def tick(row: Row) -> None:
        nonlocal done
        done += 1
        ms = f"{row.ms[-1]:.1f} ms/iter" if row.ms and row.failed is None else (row.failed or "n/a")
        load = row.loads[-1] if row.loads and row.failed is None else None
        stretch = row.stretches[-1] if row.stretches and row.failed is None else None
        others = [f"other processes used {load * 100:.0f}% of our CPUs" if load is not None else "",
                  f"waiting for a CPU made it {stretch:.1f}x slower" if stretch is not None and stretch >= 1.05 else ""]
        said = ", ".join(x for x in others if x)
        progress.update(done, f"{row.describe()}: {ms}" + (f" ({said})" if said else ""))

    with tempfile.TemporaryDirectory(prefix="tuigpt-tune-") as tmp:
        def time_pass(group: list[Row]) -> LoadChange | None:
            for attempt in range(2):
                changed = _time_pass(config_path, overrides, group, ranks, steps, warmup, rounds, tmp, tick)
                if changed is None or attempt == 1:
                    return changed
                tuned.retimed.append(changed)
                progress.total += len(group) * rounds
                progress.update(done, f"the load changed ({changed.describe()}): timing these rows again")
            return None

        tuned.load = time_pass(rows)
        for row in rows:
            row.versus = _against(base, row)
        fits = [r for r in rows if r.ms_per_iter is not None]
        if fits and not only_splits and tuned.load is None:
            best = min(fits, key=lambda r: r.ms_per_iter or 0.0).split
            dtypes = dict.fromkeys([dtype, "float32", *([choice.low_precision] if choice.low_precision else [])])
            compiles = dict.fromkeys([compiled, not compiled] if choice.can_compile else [compiled])
            extra = [Split(best.batch_size, best.accumulation, d, c) for d in dtypes for c in compiles]
            more = [Row(s) for s in extra if s not in {r.split for r in rows}]
            if more:
                reference = Row(base_split, failed=base.failed)  # the config again, in the same rounds as these
                progress.total += (len(more) + 1) * rounds
                tuned.load = time_pass([reference, *more])
                for row in more:
                    row.versus = _against(reference, row)
                rows += more
                tuned.extra_rows = len(more)
    progress.close("done")
    tuned.winner = None if tuned.load is not None else _winner(rows, base)
    return tuned


def _time_pass(config_path: str, overrides: dict[str, str], rows: list[Row], ranks: int, steps: int, warmup: int,
               rounds: int, tmp: str, tick: Callable[[Row], None]) -> LoadChange | None:
    """Every row once a round, the order reversed every other round so slow spells hit rows alike; whether the
    load of other processes changed over the rounds (the rows' earlier rounds are forgotten first)."""
    shares: list[float | None] = []
    stretches: list[float | None] = []
    cpus = 1
    for row in rows:
        row.ms, row.loads, row.stretches = [], [], []
    for r in range(rounds):
        for row in rows if r % 2 == 0 else rows[::-1]:
            if row.failed is None:
                time_row(config_path, overrides, row, ranks, steps, warmup, tmp, rows.index(row))
                if row.failed is None:
                    shares.append(row.loads[-1])
                    stretches.append(row.stretches[-1])
                    cpus = row.cpus
            tick(row)
    return load_change(shares, cpus, stretches)


def _against(base: Row, row: Row) -> Verdict | None:
    """The row against the config, round by round (None where either did not run)."""
    if row.failed is not None or base.failed is not None or not row.ms or not base.ms:
        return None
    return Verdict(tuple(paired_ratios(base.ms, row.ms)))


def _winner(rows: list[Row], base: Row) -> Row | None:
    """The row that beats the config by the most, among those that beat it beyond the spread; the config itself
    when none does; the fastest row when the config does not fit."""
    if base.ms_per_iter is None:
        fits = [r for r in rows if r.ms_per_iter is not None]
        return min(fits, key=lambda r: r.ms_per_iter or 0.0) if fits else None
    faster = [r for r in rows if r.versus is not None and r.versus.faster]
    return max(faster, key=lambda r: r.versus.speedup or 0.0) if faster else base  # type: ignore[union-attr]
