"""The plan of a run that ends at a time: how many iterations fit before the end, where the WSD cooldown starts
(the last ``cooldown_frac`` of them), and when each happens on the clock.

Pure arithmetic on the run's measured costs; :mod:`tuigpt.engine.planner` measures them as the run goes, plans
again with every step, and says so (a :class:`~tuigpt.run.events.PlanUpdated`) at the start, at every eval, when
the speed changes by more than its noise, on a pause and when the cooldown begins.

The time of ``n`` more iterations is ``n`` steps, wall to wall (the loop's own work included), plus an eval
with its checkpoints at every multiple of eval_interval on the way, plus the final eval and checkpoint after the
last one, plus stable.pt where the cooldown begins. The plan is the largest total whose time fits in what is
left. Once the cooldown has begun its start stays; only its end moves, and the learning rate falls from where it
is to min_lr over the iterations left (:class:`Cooldown`), so a slowdown late in a run shortens the cooldown
rather than overrunning the end.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Sequence

from tuigpt.run import fmt
from tuigpt.run.numbers import percentile


def cooldown_start(*, warmup_iters: int, lr_decay_iters: int, cooldown_frac: float) -> int:
    """The iteration index WSD's cooldown starts at: the last ``cooldown_frac`` of ``lr_decay_iters``, never
    inside the warmup."""
    return max(warmup_iters, lr_decay_iters - round(cooldown_frac * lr_decay_iters))


def planned_cooldown_start(total: int, cooldown_frac: float) -> int:
    """Where a planned run's cooldown starts: the last ``cooldown_frac`` of its iterations. Unlike a fixed WSD
    schedule it is not held back until the warmup ends: a run too short for its warmup (a tiny budget, a crawling
    machine) cools down from the learning rate its warmup reached rather than never cooling down."""
    return total - round(cooldown_frac * total)


@dataclass(frozen=True)
class Cooldown:
    """Where a planned cooldown stands: the learning rate falls from the peak at ``start`` to min_lr at ``end``.
    Its progress (0 at the start, 1 at the end) is ``anchor_p`` at iteration index ``anchor_it`` and grows
    linearly from there to ``end``: when a re-plan moves the end, the anchor moves to where the run is, so the
    learning rate never jumps."""

    start: int
    end: int
    anchor_it: int
    anchor_p: float = 0.0

    def progress(self, it: int) -> float:
        """The cooldown's progress at step index ``it`` (0 before it starts, 1 at and after its end)."""
        if it < self.start:
            return 0.0
        if it >= self.end:
            return 1.0
        if it <= self.anchor_it:
            return self.anchor_p
        return self.anchor_p + (1.0 - self.anchor_p) * (it - self.anchor_it) / (self.end - self.anchor_it)

    def moved_to(self, it: int, end: int) -> Cooldown:
        """The same cooldown ending at ``end`` instead, anchored at step index ``it`` (where the run is)."""
        if it <= self.start:
            return Cooldown(self.start, max(end, self.start), self.start, 0.0)
        return Cooldown(self.start, max(end, it), it, self.progress(it))


@dataclass(frozen=True)
class Costs:
    """What the plan assumes things take, in seconds."""

    step: float  # one iteration, wall to wall: the mean of the recent ones
    eval: float  # one eval with what it writes (last.pt, best.pt)
    checkpoint: float  # one checkpoint write (stable.pt, where the cooldown begins)
    final: float | None = None  # the final eval, when less than a whole one is kept for it (see final_eval)

    @property
    def final_eval(self) -> float:
        return self.eval if self.final is None else min(self.eval, self.final)


FINAL_EVAL_SHARE = 0.1  # the final eval (and the untrained one) gets at most this share of the run's length, cut
#                         to fit it (its batches come in turns, so a cut eval still measures both splits): on a
#                         machine slowed 10x an eval took half a 2-minute budget, and a run must not end early
#                         rather than train


@dataclass(frozen=True)
class Plan:
    """How the rest of the run goes: ``total_iters`` is its last iteration (the final eval and checkpoint follow);
    the cooldown starts after ``cooldown_iter`` iterations (None: no cooldown)."""

    total_iters: int
    cooldown_iter: int | None
    seconds_to_cooldown: float | None  # from now at the assumed costs; None once it has begun, or without one
    seconds_to_end: float  # from now to the end of the final eval and checkpoint
    capped: bool  # max_iters ends it before the time is up


def evals_between(first: int, last: int, eval_interval: int) -> int:
    """Evals at multiples of eval_interval after iteration ``first`` and before ``last`` (the final eval at
    ``last`` is counted apart)."""
    if last <= first + 1:
        return 0
    return (last - 1) // eval_interval - first // eval_interval


def seconds_for(iteration: int, total: int, costs: Costs, eval_interval: int, stable_at: int | None) -> float:
    """Time from ``iteration`` to the end of a run of ``total`` iterations: its steps, the evals on the way, the
    final eval, and stable.pt when it is written at ``stable_at`` on the way."""
    steps = max(0, total - iteration)
    stable = costs.checkpoint if stable_at is not None and iteration <= stable_at < total else 0.0
    return steps * costs.step + evals_between(iteration, total, eval_interval) * costs.eval + costs.final_eval + stable


def fit(iteration: int, seconds_left: float, costs: Costs, *, eval_interval: int, cooldown_frac: float | None,
        cooldown_begun: int | None = None, cap: int | None = None) -> Plan:
    """The plan from ``iteration`` with ``seconds_left`` until the end: the most iterations whose time (steps,
    evals, the final eval, stable.pt) fits. ``cooldown_frac`` None: no cooldown; ``cooldown_begun``: the
    iteration its cooldown began at (it stays); ``cap``: max_iters."""
    eval_interval = max(1, eval_interval)
    step = max(costs.step, 1e-9)

    def stable_at(total: int) -> int | None:
        if cooldown_frac is None or cooldown_begun is not None:
            return None
        return planned_cooldown_start(total, cooldown_frac)

    def fits(total: int) -> bool:
        return seconds_for(iteration, total, costs, eval_interval, stable_at(total)) <= seconds_left

    lo = iteration  # ending now always "fits": its final eval is the least the run can do
    hi = iteration + max(1, math.ceil(max(0.0, seconds_left) / step)) + 1
    if cap is not None:
        hi = min(hi, max(cap, iteration))
    while lo < hi:  # the largest total that fits (time grows with the total)
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    total = lo
    capped = cap is not None and total >= cap and fits(cap)
    if cooldown_frac is None:
        cooldown = None
    elif cooldown_begun is not None:
        cooldown = cooldown_begun
    else:
        cooldown = stable_at(total)
    to_cooldown = None
    if cooldown is not None and cooldown_begun is None and cooldown >= iteration:
        to_cooldown = seconds_for(iteration, cooldown, costs, eval_interval, None) - costs.final_eval
    return Plan(total, cooldown, to_cooldown, seconds_for(iteration, total, costs, eval_interval, stable_at(total)),
                capped)


@dataclass(frozen=True)
class StepSpread:
    """Recent step times: the mean the plan assumes, and how much they vary (how sure the plan is)."""

    mean: float  # seconds
    median: float
    p10: float
    p90: float
    n: int

    @property
    def relative(self) -> float:
        """Half the p10-p90 range over the median: "±4%"."""
        return (self.p90 - self.p10) / 2 / self.median if self.median > 0 else 0.0


def step_spread(seconds: Sequence[float]) -> StepSpread | None:
    """The spread of ``seconds`` (None when empty)."""
    if not seconds:
        return None
    return StepSpread(statistics.fmean(seconds), statistics.median(seconds), percentile(seconds, 10),
                      percentile(seconds, 90), len(seconds))


def block_means(steps: Sequence[tuple[float, float]], seconds: float) -> list[float]:
    """The mean step time of each ``seconds`` of ``steps`` ((end time, step seconds) pairs, oldest first), for
    speed_noise; a step longer than ``seconds`` is a block of its own."""
    means: list[float] = []
    start, total, n = None, 0.0, 0
    for t, s in steps:
        if start is not None and t - start >= seconds:
            means.append(total / n)
            start, total, n = None, 0.0, 0
        if start is None:
            start = t - s
        total += s
        n += 1
    if n:
        means.append(total / n)
    return means


def speed_noise(means: Sequence[float]) -> float | None:
    """How much ``means`` (successive blocks' mean step times) vary around the speed, relative to it, as the
    half p10-p90 range of normal noise: judged on the differences of neighbours (the median of |difference| is
    0.954 sigma for normal noise, the half range 1.2816 sigma), so a change of speed inside them is one large
    difference, not a wider spread (p10-p90 of the blocks themselves hid a 2x slowdown behind its own step).
    None for fewer than 3 blocks."""
    if len(means) < 3:
        return None
    middle = statistics.median(means)
    if middle <= 0:
        return None
    return 1.343 * statistics.median(abs(b - a) for a, b in zip(means, means[1:])) / middle


def speed_changed(recent: StepSpread, assumed: float, noise: float, floor: float = 0.1) -> bool:
    """Whether the recent steps' mean differs from the step time a plan assumed by more than noise: more than
    ``floor`` (10%) and more than ``noise`` (speed_noise's, or a window's relative spread)."""
    if assumed <= 0:
        return True
    return abs(recent.mean / assumed - 1.0) > max(floor, noise)


def move_threshold(length_seconds: float) -> float:
    """How far a plan's clock times may move before the user is alerted: "a few minutes" (3) on a long run, 5%
    of a short one, never under 30 s."""
    return min(180.0, max(30.0, 0.05 * length_seconds))


def clock(t: float, now: float, length_seconds: float) -> str:
    """A plan's clock time: with seconds when the whole run is under an hour (a 10-minute run's minutes are too
    coarse), else fmt.clock's."""
    if length_seconds < 3600:
        local, today = time.localtime(t), time.localtime(now)
        if local[:3] == today[:3]:
            return time.strftime("%H:%M:%S", local)
    return fmt.clock(t, now)


# ---------------------------------------------------------------- how a plan reads


def start_text(kind: str, text: str, deadline: float | None, max_iters: int, now: float) -> str:
    """The first line's part about a run's end: how it counts, when, and whether max_iters is a cap or derived."""
    if not kind:
        return ""
    length = (deadline - now) if deadline is not None else 0.0
    how = ("time budget {} (run time from the start: a pause extends it)" if kind == "budget"
           else "deadline {} (the wall clock: a pause eats into it)").format(text)
    when = f", ends by {clock(deadline, now, length)}" if deadline is not None else ""
    iters = f"max_iters {max_iters:,} caps it" if max_iters else "max_iters derived from the plan"
    return f"{how}{when} | {iters}"


def describe(e: Any, now: float) -> str:
    """A PlanUpdated in one line: "cooldown from ~05:48 (iter 9,876), done ~07:00 · 12,345 iters · steps 38.2 ms
    ±4%"."""
    at = lambda t: clock(t, now, e.length)  # noqa: E731
    if e.cooldown_begun:
        head = f"cooling down since iter {e.cooldown_iter:,}, done ~{at(e.end_at)}"
    elif e.cooldown_iter is not None and e.cooldown_at is not None:
        head = f"cooldown from ~{at(e.cooldown_at)} (iter {e.cooldown_iter:,}), done ~{at(e.end_at)}"
    else:
        head = f"done ~{at(e.end_at)}"
    tail = f" · {e.total_iters:,} iters · steps {e.step_ms:.1f} ms ±{100 * e.step_spread:.0f}%"
    if e.capped:
        tail += f" · max_iters ends it before the {'budget' if e.kind == 'budget' else 'deadline'} ({at(e.deadline)})"
    return head + tail


def cooldown_notice(e: Any, now: float) -> str:
    """The notice when the cooldown begins."""
    return (f"cooldown begins at iter {e.iter:,}: the learning rate falls to min_lr by iter {e.total_iters:,}, done "
            f"~{clock(e.end_at, now, e.length)}; stable.pt keeps the model before it (--resume --time continues "
            f"from there)")


def moved_notice(e: Any, before: Any, now: float) -> str:
    """The notice when a plan's clock times moved by more than a few minutes."""
    at = lambda t: clock(t, now, e.length)  # noqa: E731
    was_at = before.cooldown_at if e.cooldown_at is not None else before.end_at
    what = "cooldown from" if e.cooldown_at is not None else "done"
    new_at = e.cooldown_at if e.cooldown_at is not None else e.end_at
    why = {"speed": f"steps now take {e.step_ms:.1f} ms (were {before.step_ms:.1f})",
           "resume": "after the pause", "eval": "re-planned at the eval"}.get(e.reason, e.reason)
    return (f"plan moved {fmt.duration(abs(e.moved))} {'later' if e.moved > 0 else 'earlier'}: {what} ~{at(new_at)} "
            f"(was ~{at(was_at)}), {e.total_iters:,} iters (were {before.total_iters:,}): {why}")


def short(e: Any, now: float, ended_at: float | None = None) -> str:
    """A plan in a few words, for `tuigpt runs`: "cooldown ~05:48, done ~07:00" while the run goes; once it ended,
    when, against the time it had to end by."""
    at = lambda t: clock(t, now, e.length)  # noqa: E731
    if ended_at is not None:
        late = ended_at - e.deadline
        how = "on time" if abs(late) < max(5.0, 0.02 * e.length) else f"{fmt.duration(abs(late))} {'late' if late > 0 else 'early'}"
        return f"ended {at(ended_at)}, {how} ({'budget' if e.kind == 'budget' else 'deadline'} {at(e.deadline)})"
    if e.cooldown_begun:
        return f"cooling down, done ~{at(e.end_at)}"
    if e.cooldown_at is not None:
        return f"cooldown ~{at(e.cooldown_at)}, done ~{at(e.end_at)}"
    return f"done ~{at(e.end_at)}"
