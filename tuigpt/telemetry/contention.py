"""When contention, not the model, sets the training speed: other processes hold this process's CPUs while its
threads wait for them.

Issue 27 saw "load 100% of 2" on a VM where btop showed tuigpt getting 48% and another trainer the rest, its steps
5-10x slower, and nothing said why. Two measurements decide, each telemetry sample (:class:`~tuigpt.telemetry.load.
LoadMeter` over the sampling interval):

- other processes (and a hypervisor's steal) used more than ``BUSY_SHARE`` (20%) of this process's CPUs, and
- this process's threads waited, runnable, for a CPU someone else held: ``stretch`` (running + waiting over running,
  Linux schedstat) at least ``CONTENDED_STRETCH``, i.e. they waited a third of the time they were ready to run. (The
  steps slow down less than the threads wait: a real run beside one busy loop read 2.7x with steps 193 -> 316 ms;
  the notice quotes the step times for that.)

Either alone is not contention: a trainer whose own threads outnumber its cores waits on itself (others ~0%), and a
browser using a quarter of a CPU beside a trainer that never waits for one costs it nothing. Nor is a process that
hardly wants a CPU (running and waiting for under ``MIN_DEMAND`` of one): a monitor left open after its run ended
waits when it wakes (stretch 2.8 on the loaded VM) but nothing it does is slowed. On the shared 2-core
AMD EPYC VM a 2-thread torch loop read stretch 3.0-3.2 with others at 67% (other helpers' tests), 4.6-5.0 with one
busy loop more and 6.4-8.6 with two (``others`` 78-89%).

A sample is noisy and a compile or a `git status` beside the run is no news: contention starts after
``ENTER_SECONDS`` of contended samples and ends after ``LEAVE_SECONDS`` without, and :class:`ContentionNotices`
says so once each time (a warning with the topic "contention", an alert; an info line when it ends), never every
second.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Any, Callable

from tuigpt.run import fmt
from tuigpt.run.events import Event, IterationStats, Notice, RunFailed, RunFinished, TelemetrySnapshot
from tuigpt.run.readings import CpuSnapshot
from tuigpt.telemetry.load import BUSY_SHARE, Load

CONTENDED_STRETCH = 1.5
MIN_DEMAND = 0.5  # CPUs' worth of time this process ran or waited to run: under it, it is too idle to be slowed
ENTER_SECONDS = 5.0
LEAVE_SECONDS = 10.0
STEPS_COMPARED = 20  # iterations on each side of the start whose median step times the notice compares


def contended_now(others: float | None, stretch: float | None, own: float | None = None,
                  cpus: int | None = None) -> bool | None:
    """One sample's verdict: others hold the CPUs *and* this process, wanting one, waits for them (None: not
    measurable). ``own`` share of ``cpus`` times the stretch is the CPUs it wanted (when both are known)."""
    if others is None or stretch is None:
        return None
    if own is not None and cpus and own * cpus * stretch < MIN_DEMAND:
        return False
    return others > BUSY_SHARE and stretch >= CONTENDED_STRETCH


class ContentionWatch:
    """Whether contention sets the speed, from one Load a sample, held against noise: it starts after
    ``enter_seconds`` of contended samples in a row and ends after ``leave_seconds`` of samples without."""

    def __init__(self, enter_seconds: float = ENTER_SECONDS, leave_seconds: float = LEAVE_SECONDS) -> None:
        self.enter_seconds, self.leave_seconds = enter_seconds, leave_seconds
        self.contended: bool | None = None  # None until a sample could be measured
        self._since: float | None = None  # when the samples began to disagree with ``contended``

    def update(self, load: Load | None, now: float) -> bool | None:
        """Take a sample measured up to ``now`` (seconds, any monotonic clock); the state after it."""
        verdict = contended_now(load.others, load.stretch, load.own, load.cpus) if load is not None else None
        if verdict is None:
            return self.contended
        if self.contended is None:
            self.contended = False
        if verdict == self.contended:
            self._since = None
            return self.contended
        if self._since is None:
            self._since = now
        if now - self._since >= (self.enter_seconds if verdict else self.leave_seconds):
            self.contended, self._since = verdict, None
        return self.contended


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class ContentionNotices:
    """A bus subscriber: one warning Notice (topic "contention") when the CPU readings say contention began, with
    the shares, the wait and the step times before and since; one info Notice when it ended. Silent once the run
    ended (a monitor left open has nothing to be slowed)."""

    def __init__(self, publish: Callable[[Event], None]) -> None:
        self._publish = publish
        self._steps: deque[tuple[float, float]] = deque(maxlen=500)  # (event time, ms/iter) of recent iterations
        self._contended = False
        self._streak: float | None = None  # time of the last sample that was not contended
        self._began: float | None = None  # when the contention now under way began (its first contended sample)
        self._last_contended: float | None = None  # the time of the last contended sample
        self._over = False  # the run ended

    def __call__(self, event: Event) -> None:
        if isinstance(event, (RunFinished, RunFailed)):
            self._over = True
        elif self._over:
            return
        elif isinstance(event, IterationStats):
            if event.ms_per_iter > 0:
                self._steps.append((event.time, event.ms_per_iter))
        elif isinstance(event, TelemetrySnapshot) and event.kind == "cpu":
            self._on_cpu(event.data, event.time)

    def _on_cpu(self, data: Any, now: float) -> None:
        verdict = contended_now(getattr(data, "others_share", None), getattr(data, "stretch", None),
                                getattr(data, "own_share", None), getattr(data, "share_cpus", None))
        if verdict is False or self._streak is None:
            self._streak = now
        if verdict:
            self._last_contended = now
        state = getattr(data, "contended", None)
        if state is None or bool(state) == self._contended:
            return
        self._contended = bool(state)
        if self._contended:
            self._began = self._streak
            self._publish(Notice(level="warning", message=self._started(data), time=now, topic="contention"))
        else:
            self._publish(Notice(level="info", message=self._ended(data, now), time=now, topic="contention"))

    def _started(self, data: Any) -> str:
        began = self._began if self._began is not None else 0.0
        before = _median([ms for t, ms in self._steps if t <= began][-STEPS_COMPARED:])
        since = _median([ms for t, ms in self._steps if t > began][-STEPS_COMPARED:])
        steps = ""
        if since is not None:
            steps = f"; steps take {fmt.ms(since)}" + (f" ({fmt.ms(before)} before)" if before is not None else "")
        waiting = data.wait_share if isinstance(data, CpuSnapshot) else None
        waits = f" {waiting * 100:.0f}% of the time they are ready to run" if waiting is not None else ""
        return (f"CPU contention: {_shares(data)}, and its threads wait for a CPU{waits}: other processes, not the "
                f"model, set the speed now{steps}")

    def _ended(self, data: Any, now: float) -> str:
        began = self._began if self._began is not None else now
        last = self._last_contended if self._last_contended is not None else now
        during = _median([ms for t, ms in self._steps if began < t <= last])  # (not the quiet ones since)
        steps = f"; steps {fmt.ms(during)} during it" if during is not None else ""
        return f"CPU contention over after {fmt.duration(now - began)}: {_shares(data)}{steps}"


def _shares(data: Any) -> str:
    """e.g. "other processes used 52% of tuigpt's 2 CPUs (tuigpt 48%)"."""
    cpus = getattr(data, "share_cpus", None) or 0
    own = getattr(data, "own_share", None)
    mine = f" (tuigpt {own * 100:.0f}%)" if own is not None else ""
    others = getattr(data, "others_share", None)
    used = "n/a" if others is None else f"{others * 100:.0f}%"  # (a reading that could not measure them)
    return f"other processes used {used} of tuigpt's {cpus} CPU{'s' * (cpus != 1)}{mine}"
