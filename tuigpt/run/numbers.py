"""Every derived number tuigpt shows, one formula each: MFU, speed, ETA, the eval schedule, the smoothed
loss, the cluster balance.

The headless lines, the monitor, ``tuigpt watch``, ``tuigpt runs`` and ``tuigpt bench`` all call these,
so they agree to the digit. :class:`RunProgress` turns a run's events into its speed and ETA.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from tuigpt.run.events import (EvalIntervalChanged, EvalResult, Event, HistoryLoaded, IterationStats, RunFailed,
                               RunFinished, RunStarted)

SPEED_WINDOW = 50  # ms/iter is the median of this many recent iterations: one slow step (a GC pause) moves nothing
WARMUP_ITERS = 5  # the first iterations of every session (allocation, compile, caches) are left out of speeds
EMA_BETA = 0.95


def mfu(flops_per_token: float, tokens_per_sec: float, peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s (FLOPs per token × tokens/s) over the device's peak FLOP/s."""
    if not peak_flops or peak_flops <= 0:
        return None
    return flops_per_token * tokens_per_sec / peak_flops


def mfu_plausible(value: float | None) -> bool:
    """Whether an MFU can be true: above 100% of the peak means the peak is wrong (measured while the machine
    was busy, or a stale calibration), not that the model beat the hardware."""
    return value is None or value <= 1.0


def evals_remaining(iteration: int, max_iters: int, eval_interval: int) -> int:
    """Evals still to come after ``iteration``: one at every multiple of eval_interval up to max_iters, and
    the final one at max_iters when it is not a multiple (the trainer always evaluates the end)."""
    if eval_interval < 1 or iteration >= max_iters:
        return 0
    multiples = max_iters // eval_interval - iteration // eval_interval
    return multiples + (1 if max_iters % eval_interval else 0)


def evals_in_run(steps: int, eval_interval: int) -> int:
    """Evals in a fresh run of ``steps``: the untrained one at iteration 0 and every one after it."""
    return 1 + evals_remaining(0, steps, eval_interval)


def eta_seconds(remaining_iters: int, ms_per_iter: float | None, evals_left: int = 0,
                seconds_per_eval: float | None = None) -> float | None:
    """Time left: remaining iterations × ms/iter, plus the evals still to come × seconds per eval.
    None while no iteration has been timed."""
    if ms_per_iter is None:
        return None
    return max(0, remaining_iters) * ms_per_iter / 1000.0 + evals_left * (seconds_per_eval or 0.0)


def percentile(values: Iterable[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class Ema:
    """Exponential moving average, bias-corrected (as Adam, nanochat): an EMA started at 0 is divided by
    1 - beta**steps, so the first values are not pulled towards 0 (or sit above the raw loss)."""

    def __init__(self, beta: float = EMA_BETA) -> None:
        self.beta = beta
        self._value = 0.0
        self._steps = 0

    def update(self, x: float) -> float:
        self._steps += 1
        self._value = self.beta * self._value + (1.0 - self.beta) * x
        return self.value

    @property
    def value(self) -> float:
        return self._value / (1.0 - self.beta ** self._steps) if self._steps else float("nan")


class SpeedWindow:
    """ms/iter now: the median of the last SPEED_WINDOW iterations, the first WARMUP_ITERS of each session
    left out. Iterations of earlier sessions (a resumed run's history) count as already warm."""

    def __init__(self, window: int = SPEED_WINDOW, warmup: int = WARMUP_ITERS) -> None:
        self._ms: deque[float] = deque(maxlen=window)
        self._warmup = warmup
        self._session = 0

    def new_session(self) -> None:
        self._session = 0

    def add(self, ms: float) -> bool:
        """Count one live iteration; False while it is still warm-up (left out)."""
        self._session += 1
        if self._session <= self._warmup or not ms > 0:
            return False
        self._ms.append(ms)
        return True

    def add_past(self, values: Iterable[float]) -> None:
        """Iterations of earlier sessions, oldest first: they fill the window behind the live ones."""
        for ms in reversed([v for v in values if v > 0][-(self._ms.maxlen or 0):]):
            if len(self._ms) >= (self._ms.maxlen or 0):
                break
            self._ms.appendleft(ms)

    @property
    def ms_per_iter(self) -> float | None:
        return statistics.median(self._ms) if self._ms else None

    @property
    def values(self) -> list[float]:
        return list(self._ms)


class RunProgress:
    """A run's position, speed and time left, from its events (what every front end shows as ETA).

    Not thread-safe on its own: call it from one thread, or under the caller's lock.
    """

    def __init__(self) -> None:
        self.max_iters = 0
        self.eval_interval = 1
        self.iteration: int | None = None
        self.speed = SpeedWindow()
        self.eval_seconds = 0.0
        self.evals = 0
        self._tps_sum = self._mfu_sum = 0.0
        self._tps_n = self._mfu_n = 0
        self.last: IterationStats | None = None

    def observe(self, event: Event) -> None:
        if isinstance(event, IterationStats):
            self.iteration = event.iter
            self.last = event
            if self.speed.add(event.ms_per_iter):
                self._tps_sum += event.tokens_per_sec
                self._tps_n += 1
                if event.mfu is not None:
                    self._mfu_sum += event.mfu
                    self._mfu_n += 1
        elif isinstance(event, EvalResult):
            self._count_eval(event)
        elif isinstance(event, RunStarted):
            self.max_iters = event.max_iters
            self.eval_interval = max(1, event.eval_interval)
            if self.iteration is None or event.resumed:
                self.iteration = event.start_iter
            self.speed.new_session()
        elif isinstance(event, EvalIntervalChanged):
            self.eval_interval = max(1, event.eval_interval)
        elif isinstance(event, HistoryLoaded):
            past = [e for e in event.events if isinstance(e, IterationStats)]
            self.speed.add_past(e.ms_per_iter for e in past)
            for e in event.events:
                if isinstance(e, EvalResult):
                    self._count_eval(e)
            if past:
                self.iteration = max(self.iteration or 0, past[-1].iter)
        elif isinstance(event, (RunFinished, RunFailed)):
            self.iteration = event.iter

    def _count_eval(self, event: EvalResult) -> None:
        if event.seconds > 0:
            self.eval_seconds += event.seconds
            self.evals += 1

    @property
    def ms_per_iter(self) -> float | None:
        return self.speed.ms_per_iter

    @property
    def seconds_per_eval(self) -> float | None:
        return self.eval_seconds / self.evals if self.evals else None

    @property
    def tokens_per_sec_avg(self) -> float | None:
        return self._tps_sum / self._tps_n if self._tps_n else None

    @property
    def mfu_avg(self) -> float | None:
        return self._mfu_sum / self._mfu_n if self._mfu_n else None

    def eta_seconds(self) -> float | None:
        """Training left at the recent speed, plus the evals still to come (the final one included)."""
        if self.iteration is None:
            return None
        left = evals_remaining(self.iteration, self.max_iters, self.eval_interval)
        return eta_seconds(self.max_iters - self.iteration, self.ms_per_iter, left, self.seconds_per_eval)


# ---------------------------------------------------------------- several ranks


def rank_busy_ms(rank: dict[str, Any]) -> float:
    """What ranks are compared on: data wait + compute per iteration (in synchronous data parallelism every
    rank's ms/iter is the same: the fast ones wait in the all-reduce)."""
    return float(rank.get("data_ms") or 0.0) + float(rank.get("compute_ms") or 0.0)


def slowest_over_fastest(ranks: list[dict[str, Any]]) -> float:
    """The busiest rank's data + compute over the least busy one's (1.0: balanced)."""
    busy = [rank_busy_ms(r) for r in ranks]
    fastest = min(busy) if busy else 0.0
    return max(busy) / fastest if fastest > 0 else 1.0


def comm_over_compute(ranks: list[dict[str, Any]]) -> float | None:
    """Exposed all-reduce time over compute time, summed over ranks (None when unknown)."""
    compute = sum(float(r.get("compute_ms") or 0.0) for r in ranks)
    comm = sum(float(r.get("comm_ms") or 0.0) for r in ranks)
    return comm / compute if compute > 0 else None


# ---------------------------------------------------------------- will more machines help? (tuigpt netcheck)

WORTH_IT = 1.1  # a predicted speed-up from here on is worth the second machine ...
LOSS = 0.9  # ... below this the link and the waits cost more than the extra compute saves


@dataclass(frozen=True)
class SpeedupPrediction:
    one_ms: float  # one iteration on one process (the fastest rank's machine alone)
    ranks_ms: float  # one iteration on the N ranks
    speedup: float  # one_ms / ranks_ms


def predicted_speedup(fast_micro_ms: float, slow_micro_ms: float, ranks: int, accumulation: int, update_ms: float,
                      exposed_comm_ms: float, sync_ms: float) -> SpeedupPrediction:
    """Speed-up of N data-parallel ranks over one process training the same global batch (tokens/iteration).

    ``fast_micro_ms``: one micro-step (batch + forward + backward, no gradient sync) on the fastest rank;
    ``slow_micro_ms``: the same at the group's pace, i.e. the slowest rank's in each iteration (its noise included:
    every rank waits for whichever is last); ``accumulation``: gradient_accumulation_steps G, the global
    micro-batches per iteration; ``update_ms``: clip + optimizer step; ``exposed_comm_ms``: what DDP's bucketed
    all-reduce adds to the synced backward beyond what hides under it; ``sync_ms``: the small collectives of an
    iteration besides DDP's (the command broadcast at the boundary, the loss mean)::

        one      = G × fast_micro + update
        N ranks  = (G / N) × slow_micro + exposed_comm + update + sync
        speed-up = one / N ranks

    The single process compared with is the fastest machine alone. Evals and checkpoints are left out: this is
    training throughput (tokens/s); what a trainer does per iteration on top (events, logging) is the same on
    both sides and left out too.
    """
    one = accumulation * fast_micro_ms + update_ms
    if ranks <= 1:
        return SpeedupPrediction(one, one, 1.0)
    many = accumulation / ranks * slow_micro_ms + exposed_comm_ms + update_ms + sync_ms
    return SpeedupPrediction(one, many, one / many if many > 0 else float("nan"))


def speedup_verdict(speedup: float, ranks: int, hosts: int) -> str:
    """The one-line answer: "2 nodes ≈ 1.78× — worth it" / "the link costs more than it saves: 0.70×"."""
    who = f"{hosts} nodes" if hosts > 1 else f"{ranks} ranks"
    if speedup >= WORTH_IT:
        return f"{who} ≈ {speedup:.2f}× — worth it"
    if speedup >= LOSS:
        return f"{who} ≈ {speedup:.2f}× — no real gain: the link and the waits eat the extra compute"
    return f"the link costs more than it saves: {speedup:.2f}×"


def measured_speedup(one_ms_per_iter: float, ranks_ms_per_iter: float) -> float:
    """What netcheck's prediction is checked against: ms/iter of one process over ms/iter of the N ranks, the
    same global batch (tokens per iteration) in both."""
    return one_ms_per_iter / ranks_ms_per_iter


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
