"""Variants timed in alternating rounds (`dtype: auto`, `compile: auto`, `tuigpt tune`, `tuigpt bench --compare`):
the speed-up of one over another round by round, its round-to-round spread, whether the machine's load held
steady meanwhile, and whether a winner can be declared at all.

Another process that starts or stops halfway through a timing makes whatever ran in the quiet part look fast: on a
2-core VM `tuigpt tune` once wrote a split it measured at 9.49x the config while a second trainer stopped halfway
through the table; timed again idle, that split was 0.61x (issue 27). Alternating the order (a-b, b-a, ...) spreads
a steady load over both; it cannot undo a load that changed. So a winner needs both:

- the load held steady (:mod:`tuigpt.telemetry.load` measures it around each timing): the share of our CPUs other
  processes used moved by no more than LOAD_CHANGE from the first timing, and the slowdown waiting for a CPU put on
  this process (its "stretch") by no more than a factor STRETCH_CHANGE; otherwise the caller times again once, then
  refuses;
- its speed-up, the median of the per-round ratios, beats 1 by more than the spread of those ratios (half their
  range: with two rounds, both rounds must agree).

Nothing here imports torch or reads the machine: callers pass the milliseconds and the load shares they measured.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

# Others' share of our CPUs moving by more than this during one timing is a changed load. A steady second trainer
# on a 2-core box reads the same in every round (it slows every variant alike); one that stops halfway moves the
# share by ~0.5 of the CPUs it shared. 0.25 sits between the two and above the few-percent jitter of an idle box.
LOAD_CHANGE = 0.25
# ... and on a machine already saturated, where that share cannot move much (82% of a CPU before four busy loops
# arrived, 96% after), the slowdown they impose does: a timing stretched 1.5x more than the first one was timed on
# another machine, in effect. An idle box reads 1.0-1.1 from one timing to the next.
STRETCH_CHANGE = 1.5


def paired_ratios(a_ms: Sequence[float], b_ms: Sequence[float]) -> list[float]:
    """Round by round, a's milliseconds over b's (above 1: b was faster in that round)."""
    return [a / b for a, b in zip(a_ms, b_ms) if a > 0 and b > 0]


def spread(ratios: Sequence[float]) -> float | None:
    """The round-to-round spread of a speed-up: half the range of the per-round ratios (None under two rounds, where
    there is nothing to compare)."""
    return (max(ratios) - min(ratios)) / 2.0 if len(ratios) >= 2 else None


@dataclass(frozen=True)
class LoadChange:
    """The load moved during a timing: other processes' share of our CPUs from ``first`` (the first timing) to
    ``furthest`` (the reading furthest from it), and, when that is what moved, the slowdown they put on this process
    (``stretch``: first, furthest)."""

    first: float
    furthest: float
    cpus: int
    stretch: tuple[float, float] | None = None

    def describe(self) -> str:
        """e.g. "other processes used 3% → 81% of 1 CPU", or "other processes slowed this one 1.1x → 4.0x (they
        used 82% → 96% of 1 CPU)"."""
        share = f"{self.first * 100:.0f}% → {self.furthest * 100:.0f}% of {self.cpus} CPU{'s' * (self.cpus != 1)}"
        if self.stretch is None:
            return f"other processes used {share}"
        return f"other processes slowed this one {self.stretch[0]:.1f}x → {self.stretch[1]:.1f}x (they used {share})"

    def to_dict(self) -> dict[str, object]:
        return {"first": round(self.first, 4), "furthest": round(self.furthest, 4), "cpus": self.cpus,
                "stretch": list(self.stretch) if self.stretch else None}


def load_change(shares: Sequence[float | None], cpus: int,
                stretches: Sequence[float | None] = ()) -> LoadChange | None:
    """Whether the load moved, over timings in the order they ran: others' share by more than LOAD_CHANGE, or the
    stretch by more than a factor STRETCH_CHANGE, from the first timing (None: steady, or not measurable)."""
    known = [(k, s) for k, s in enumerate(shares) if s is not None]
    if len(known) < 2:
        return None
    first = known[0][1]
    _, furthest = max(known, key=lambda ks: abs(ks[1] - first))
    if abs(furthest - first) > LOAD_CHANGE:
        return LoadChange(first, furthest, cpus)
    stretched = [(k, s) for k, s in enumerate(stretches) if s is not None and s > 0]
    if len(stretched) >= 2:
        (k0, s0), (k1, s1) = stretched[0], max(stretched, key=lambda ks: max(ks[1] / stretched[0][1],
                                                                              stretched[0][1] / ks[1]))
        if max(s1 / s0, s0 / s1) > STRETCH_CHANGE:
            share = lambda k: shares[k] if k < len(shares) and shares[k] is not None else first  # noqa: E731
            return LoadChange(share(k0), share(k1), cpus, (s0, s1))
    return None


@dataclass(frozen=True)
class Verdict:
    """Whether b beats a: from the per-round ratios a/b and the load over the timing."""

    ratios: tuple[float, ...]
    load: LoadChange | None = None
    min_speedup: float = 1.0  # a winner must also reach this (e.g. 1.05 for a compile that costs a first step)

    @property
    def speedup(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def spread(self) -> float | None:
        return spread(self.ratios)

    @property
    def faster(self) -> bool:
        """b is faster by more than the round-to-round spread (and min_speedup), measured under a steady load."""
        s, d = self.speedup, self.spread
        return self.load is None and s is not None and d is not None and s >= self.min_speedup and s - 1.0 > d

    def describe(self) -> str:
        """e.g. "1.31x ± 0.04 over 3 rounds"."""
        s, d = self.speedup, self.spread
        if s is None:
            return "not timed"
        rounds = f"{len(self.ratios)} round{'s' * (len(self.ratios) != 1)}"
        return f"{s:.2f}x ± {d:.2f} over {rounds}" if d is not None else f"{s:.2f}x over {rounds}"

    def why_not(self) -> str:
        """Why no winner is declared (only meaningful when not ``faster``)."""
        s, d = self.speedup, self.spread
        if self.load is not None:
            return f"the machine's load changed while timing ({self.load.describe()})"
        if s is None:
            return "nothing was timed"
        if d is None:
            return "one round measures no spread (time at least two)"
        if s - 1.0 <= d:
            return f"{self.describe()}: within the round-to-round spread"
        return f"{self.describe()}: below the {self.min_speedup:.2f}x worth switching for"
