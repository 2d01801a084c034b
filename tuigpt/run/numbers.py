"""Every derived number tuigpt shows, one formula each: MFU, speed, ETA, the eval schedule, the smoothed
loss, the cluster balance.

The headless lines, the monitor, ``tuigpt watch``, ``tuigpt runs`` and ``tuigpt bench`` all call these,
so they agree to the digit. :class:`RunProgress` turns a run's events into its speed and ETA.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

from tuigpt.run.events import (
    EndReason,
    EvalIntervalChanged,
    EvalResult,
    Event,
    HistoryLoaded,
    IterationStats,
    PlanUpdated,
    RunFailed,
    RunFinished,
    RunStarted,
)

SPEED_WINDOW = 50  # ms/iter is the median of this many recent iterations: one slow step (a GC pause) moves nothing
WARMUP_ITERS = 5  # the first iterations of every session (allocation, compile, caches) are left out of speeds
# The ETA's speed: the mean seconds per iteration over the last ETA_WINDOW_SECONDS of training (all of it while the
# run is younger). A mean, not ms/iter's median: on a CPU shared with another process the steps it slows are the
# long tail, and the median ended a run 25% after its ETA (issue 27). Minutes, not 50 steps: the median of 50 steps
# flipped between 13m22s and 4m29s within 40 s as the other process came and went; a 5-minute mean moves by at most
# the share of the window a burst fills.
ETA_WINDOW_SECONDS = 300.0
# the window cut in this many stretches of as many iterations each: the fastest and slowest give the range (of equal
# training time, one 3-s step on a busy CPU was a stretch of its own and put the far end at 13m for a 2-minute run)
ETA_CHUNKS = 5
FORWARD_SHARE = 1 / 3  # a forward pass's share of a training step's FLOPs (2N of 6N per token): an eval's batch
EMA_BETA = 0.95


def mfu(flops_per_token: float, tokens_per_sec: float, peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s (FLOPs per token × tokens/s) over the device's peak FLOP/s."""
    if not peak_flops or peak_flops <= 0:
        return None
    return flops_per_token * tokens_per_sec / peak_flops


def tokens_per_sec(tokens_per_iter: float, ms_per_iter: float) -> float:
    """Throughput: the tokens of one iteration over its time (0 for an iteration not timed)."""
    return tokens_per_iter / (ms_per_iter / 1000.0) if ms_per_iter > 0 else 0.0


def bits_per_byte(nats: float, n_bytes: float) -> float | None:
    """Bits per byte of text: the summed cross-entropy of the predicted tokens (nats) over the UTF-8 bytes those
    tokens spell, in bits. Tokenizers cut text into tokens of different sizes, so losses per token of a char run
    and a BPE run cannot be compared; per byte they can (nanochat's evaluate_bpb; special tokens such as
    end-of-text spell no bytes and are left out of both sums). None when no bytes were predicted."""
    return nats / (math.log(2) * n_bytes) if n_bytes > 0 else None


def loss_in_bits_per_byte(loss: float, bytes_per_token: float | None) -> float | None:
    """A mean loss per token (nats) as bits per byte, for text whose tokens spell ``bytes_per_token`` bytes on
    average: the same quantity as :func:`bits_per_byte` when the loss was averaged over those tokens."""
    return loss / (math.log(2) * bytes_per_token) if bytes_per_token else None


def mfu_plausible(value: float | None) -> bool:
    """Whether an MFU can be true: above 100% of the peak means the peak is wrong (measured while the machine
    was busy, or a stale calibration), not that the model beat the hardware."""
    return value is None or value <= 1.0


@dataclass(frozen=True)
class BatchSplit:
    """How the ranks share one iteration: each runs ``micro_steps`` micro-batches of ``micro_batch`` sequences."""

    micro_batch: int
    micro_steps: int


def split_batch(batch_size: int, accumulation: int, ranks: int) -> BatchSplit | None:
    """Share one iteration's batch_size × gradient_accumulation_steps sequences among ``ranks`` processes, so the
    tokens per iteration (and with them the learning dynamics) are those of one process; None when they cannot be
    shared evenly.

    An accumulation that divides by the ranks is shared as nanoGPT shares it (each rank accumulation / ranks
    micro-steps of batch_size). Otherwise the micro-batch is split too: the fewest micro-steps per rank whose
    micro-batch divides evenly, never larger than batch_size (64 × 1 on 2 ranks: each rank 1 micro-step of 32).
    """
    if ranks < 1 or batch_size < 1 or accumulation < 1:
        return None
    if accumulation % ranks == 0:
        return BatchSplit(batch_size, accumulation // ranks)
    sequences = batch_size * accumulation
    for steps in range(-(-accumulation // ranks), sequences // ranks + 1):
        if sequences % (steps * ranks) == 0:
            return BatchSplit(sequences // (steps * ranks), steps)
    return None


def unsplittable_fix(batch_size: int, accumulation: int, ranks: int) -> str:
    """The one-line fix when :func:`split_batch` finds no even share: the nearest batch_size values that have one,
    or the accumulation rounded up to a multiple of the ranks."""
    step = ranks // math.gcd(accumulation, ranks)  # batch_size × accumulation must divide by ranks
    below, above = batch_size // step * step, (batch_size // step + 1) * step
    accumulation_up = -(-accumulation // ranks) * ranks
    choices = " or ".join([*(f"--batch_size={b}" for b in (below, above) if b > 0),
                           f"--gradient_accumulation_steps={accumulation_up}"])
    return (f"batch_size={batch_size} × gradient_accumulation_steps={accumulation} = {batch_size * accumulation} "
            f"sequences per iteration cannot be shared evenly by {ranks} ranks: use {choices} (this changes the tokens "
            f"per iteration)")


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


def iterations_to_repay(extra_ms: float, step_ms: float, speedup: float) -> float | None:
    """Iterations after which a one-off cost (a compile's first step beyond a normal one) is won back by steps
    ``speedup`` times faster than ``step_ms``; None when nothing is won back (speed-up 1 or less)."""
    saved = step_ms * (1.0 - 1.0 / speedup) if speedup > 0 else 0.0
    return max(0.0, extra_ms) / saved if saved > 0 else None


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

    def update(self, x: float, steps: int = 1) -> float:
        """Add ``x``, the value ``steps`` iterations after the last one: a series logged every 50 iterations (a
        report, a resumed run's history) decays as the live one does, rather than 50 times slower (the report's
        line lagged ~1,000 iterations, above every raw point)."""
        decay = self.beta ** max(1, steps)
        self._steps += max(1, steps)
        self._value = decay * self._value + (1.0 - decay) * x
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


@dataclass(frozen=True)
class Eta:
    """Time left, with a range: ``seconds`` at the window's mean speed, ``low``/``high`` at its fastest and slowest
    stretch (:class:`ThroughputWindow`); the evals still to come are in all three. ``steps``: the steps it is
    timed on; while only warm-up steps are (``warm_up``), it is rough and says so."""

    seconds: float
    low: float
    high: float
    steps: int
    warm_up: bool


class ThroughputWindow:
    """Seconds per iteration over the last ETA_WINDOW_SECONDS of training, from each iteration's ``train_seconds``
    (the run's training time, evals, checkpoints and pauses excluded), so thinned points (a watched run's history,
    the socket's few a second) time the iterations between them too. The first WARMUP_ITERS of each session are
    left out once a later step is timed; until then they are all there is (a rough estimate from the first step)."""

    def __init__(self, seconds: float = ETA_WINDOW_SECONDS, warmup: int = WARMUP_ITERS) -> None:
        self._seconds = seconds
        self._warmup = warmup
        self._spans: deque[tuple[int, float]] = deque()  # (iterations, their seconds) between consecutive points
        self._sum_iters, self._sum_seconds = 0, 0.0
        self._last: tuple[int, float] | None = None  # (iteration, train_seconds) of the newest point counted
        self._warm: list[float] = []  # seconds of this session's warm-up steps
        self._session = 0
        self._past_first: int | None = None  # the first iteration seen of an earlier session (thinned: not its 1st)

    def new_session(self, past: bool = False) -> None:
        """A session starts (``past``: an earlier one, met in a history)."""
        if not past:
            self._session = 0
            self._warm = []
        self._past_first = None
        self._last = None  # a resume's warm-up steps are not spanned

    def add(self, e: IterationStats, live: bool = True) -> None:
        """One iteration (``live``: of this session, its warm-up counted; else a past one, already warm)."""
        if live:
            self._session += 1
            if self._session <= self._warmup:
                if e.ms_per_iter > 0:
                    self._warm.append(e.ms_per_iter / 1000.0)
                self._last = None
                return
        else:  # an earlier session's: its warm-up is the iterations just after the first one seen of it
            self._past_first = e.iter if self._past_first is None else self._past_first
            if e.iter < self._past_first + self._warmup:
                self._last = None
                return
        while self._spans and self._last is not None and e.iter <= self._last[0]:  # a rewind went back: start over
            self._spans.clear()
            self._sum_iters, self._sum_seconds, self._last = 0, 0.0, None
        if self._last is not None:
            iters = e.iter - self._last[0]
            seconds = e.train_seconds - self._last[1]
            if not seconds > 0:  # a record without training time: the newest step's own time for each
                seconds = iters * max(0.0, e.ms_per_iter) / 1000.0
            if seconds > 0:
                self._spans.append((iters, seconds))
                self._sum_iters += iters
                self._sum_seconds += seconds
                while len(self._spans) > 1 and self._sum_seconds - self._spans[0][1] >= self._seconds:
                    n, s = self._spans.popleft()
                    self._sum_iters -= n
                    self._sum_seconds -= s
        self._last = (e.iter, e.train_seconds)

    @property
    def steps(self) -> int:
        """The iterations the speed is taken over (the warm-up steps while they are all there is)."""
        return self._sum_iters or len(self._warm)

    @property
    def warm_up_only(self) -> bool:
        return not self._sum_iters and bool(self._warm)

    def seconds_per_iter(self) -> tuple[float, float, float] | None:
        """(mean, fastest stretch, slowest stretch) seconds per iteration; None before any step."""
        if self._sum_iters:
            chunks: list[float] = []
            target = self._sum_iters / ETA_CHUNKS
            n, s = 0, 0.0
            for iters, seconds in self._spans:
                n, s = n + iters, s + seconds
                if n >= target:
                    chunks.append(s / n)
                    n, s = 0, 0.0
            if n:
                chunks.append(s / n)
            return self._sum_seconds / self._sum_iters, min(chunks), max(chunks)
        if self._warm:
            # warm-up only: the first step pays for allocation (and a compile), so the later ones say more
            steps = self._warm[1:] or self._warm
            return sum(steps) / len(steps), min(self._warm), max(self._warm)
        return None


class RunClock:
    """A run's elapsed time: its wall time summed over its sessions, the gaps between sessions (no process
    running) left out, a pause counted (the process ran). One definition for the header's "elapsed", the closing
    line and the loss chart's wall-clock axis.

    Each session starts at its RunStarted's time with the elapsed time of the sessions before it (``elapsed_before``,
    from the checkpoint it resumed from); a record without it (written before it existed) picks up where the last
    time seen before it left off."""

    def __init__(self) -> None:
        self._starts: list[float] = []  # session starts, in time order
        self._before: list[float | None] = []  # elapsed when each started (None: unknown, see above)
        self._seen: list[float] = []  # the latest time mapped in each session

    def start(self, when: float, elapsed_before: float | None, resumed: bool = True) -> None:
        k = bisect.bisect_left(self._starts, when)
        if k < len(self._starts) and self._starts[k] == when:
            return  # the same session twice (a history replay, then live)
        self._starts.insert(k, when)
        self._before.insert(k, elapsed_before if elapsed_before is not None or resumed else 0.0)
        self._seen.insert(k, when)

    def mark(self, when: float) -> None:
        """An event of the run happened at ``when`` (where its session got to, for the next one's start)."""
        k = bisect.bisect_right(self._starts, when) - 1
        if k >= 0:
            self._seen[k] = max(self._seen[k], when)

    def elapsed(self, when: float) -> float:
        """The run's elapsed seconds at wall time ``when`` (``when`` itself before any session is known; counted
        back from the first session known for a time before it)."""
        if not self._starts:
            return when
        k = max(0, bisect.bisect_right(self._starts, when) - 1)
        return self._before_session(k) + when - self._starts[k]

    def _before_session(self, k: int) -> float:
        for j in range(k, -1, -1):  # back to the nearest session that knows its own start
            if self._before[j] is not None:
                return float(self._before[j]) + sum(self._seen[i] - self._starts[i] for i in range(j, k))  # type: ignore[arg-type]
        return sum(self._seen[i] - self._starts[i] for i in range(k))

    @property
    def sessions(self) -> int:
        return len(self._starts)


class RunProgress:
    """A run's position, speed and time left, from its events (what every front end shows as ETA).

    Not thread-safe on its own: call it from one thread, or under the caller's lock.
    """

    def __init__(self) -> None:
        self.max_iters = 0
        self._planned = False  # a PlanUpdated was seen: the run ends where its plan ends
        self._plan_end: float | None = None  # ... at this wall time, final eval and checkpoint included
        self.eval_interval = 1
        self.iteration: int | None = None
        self.speed = SpeedWindow()
        self.throughput = ThroughputWindow()
        self.eval_seconds = 0.0
        self.evals = 0
        self._warm_evals: deque[float] = deque(maxlen=5)  # seconds of the recent evals after each session's first
        self._cold_eval: float | None = None  # the newest session's first eval (the untrained one, a compile)
        self._session_evals = 0
        self._eval_batches = 0.0  # eval_iters × 2 splits over the micro-batches of a step (0: unknown)
        self._announced: int | None = None  # the next eval the trainer announced with its last change of interval
        self._tps_sum = self._mfu_sum = 0.0
        self._tps_n = self._mfu_n = 0
        self.last: IterationStats | None = None

    def observe(self, event: Event) -> None:
        if isinstance(event, IterationStats):
            self.iteration = event.iter
            self.last = event
            if self._planned and event.iter > self.max_iters:  # the plan grew by a step or two, not worth a plan line
                self.max_iters = event.iter
            self.throughput.add(event)
            if self.speed.add(event.ms_per_iter):
                self._tps_sum += event.tokens_per_sec
                self._tps_n += 1
                if event.mfu is not None:
                    self._mfu_sum += event.mfu
                    self._mfu_n += 1
        elif isinstance(event, EvalResult):
            self._count_eval(event)
            self._time_eval(event.seconds)
        elif isinstance(event, RunStarted):
            self._session_evals = 0
            self._eval_batches = _eval_batches(event.config, event.eval_batches)
            self.max_iters = event.max_iters
            if event.deadline is not None:  # a run that ends at a time: until its first plan, its deadline is its end
                self._plan_end = event.deadline
            self.eval_interval = max(1, event.eval_interval)
            if self.iteration is None or event.resumed:
                self.iteration = event.start_iter
            self.speed.new_session()
            self.throughput.new_session()
        elif isinstance(event, EvalIntervalChanged):
            self.eval_interval = max(1, event.eval_interval)
            self._announced = event.next_eval_iter
        elif isinstance(event, PlanUpdated):  # a run that ends at a time: its plan says where it ends
            self.max_iters = event.total_iters
            self._planned = True
            self._plan_end = event.end_at
        elif isinstance(event, HistoryLoaded):
            past = [e for e in event.events if isinstance(e, IterationStats)]
            self.speed.add_past(e.ms_per_iter for e in past)
            if self.throughput.steps == 0:  # (a live run folds its history before its first step)
                starts = sorted(when for when, _ in event.sessions)
                self.throughput.new_session(past=True)
                for e in past:
                    if starts and starts[0] <= e.time:
                        while starts and starts[0] <= e.time:
                            starts.pop(0)
                        self.throughput.new_session(past=True)
                    self.throughput.add(e, live=False)
            starts = sorted(when for when, _ in event.sessions)
            for e in event.events:
                if isinstance(e, EvalResult):
                    self._count_eval(e)
                    while starts and starts[0] <= e.time:  # a session began before it: its first eval is cold
                        starts.pop(0)
                        self._session_evals = 0
                    self._time_eval(e.seconds)
            self._session_evals = 0  # (the live session's first eval is cold again)
            if past:
                self.iteration = max(self.iteration or 0, past[-1].iter)
        elif isinstance(event, (RunFinished, RunFailed)):
            self.iteration = event.iter
            if self._planned and isinstance(event, RunFinished) and event.reason == EndReason.DONE:
                # a planned run that is done ended where its plan ended: its last moments can move that end by a
                # step or two without a plan worth showing (`runs` said 360/357)
                self.max_iters = event.iter

    def _time_eval(self, seconds: float) -> None:
        if not seconds > 0:
            return
        self._session_evals += 1
        if self._session_evals == 1:
            self._cold_eval = seconds
        else:
            self._warm_evals.append(seconds)

    def eval_cost(self, step_seconds: float) -> tuple[float, float]:
        """(likely, at most) seconds of one eval still to come. The mean of the recent evals after each session's
        first: the first pays for warm-up (the untrained eval of the tiny config took 47 s under a compile on a busy
        CPU, the next ones 2-3 s, and counting it put the ETA 150% over). Before such an eval, its forward passes
        at the step's speed (FORWARD_SHARE of a step per micro-batch; several ranks evaluate in parallel, so it is
        a lower bound there), with the first eval's time as the most."""
        if self._warm_evals:
            mean = sum(self._warm_evals) / len(self._warm_evals)
            return mean, max(self._warm_evals)
        cold = self._cold_eval
        guess = self._eval_batches * step_seconds * FORWARD_SHARE if self._eval_batches else None
        if guess is None:
            return (cold or 0.0), (cold or 0.0)
        return (min(guess, cold) if cold is not None else guess), max(guess, cold or 0.0)

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

    def next_eval(self) -> int | None:
        """The iteration of the next eval: the next multiple of the interval, or the run's end (the trainer's
        EvalSchedule), None once the run is at its end."""
        if self.iteration is None or not self.max_iters or self.iteration >= self.max_iters:
            return None
        if self._announced is not None and self._announced > self.iteration:  # (a watcher may lag the trainer)
            return self._announced
        return min((self.iteration // self.eval_interval + 1) * self.eval_interval, self.max_iters)

    def eta_to(self, iteration: int) -> float | None:
        """Time from now to ``iteration`` at the ETA's speed, the evals on the way included (past max_iters too:
        how long the run would need if it went on)."""
        rate = self.throughput.seconds_per_iter()
        if self.iteration is None or rate is None:
            return None
        evals = max(0, iteration // self.eval_interval - self.iteration // self.eval_interval)
        return eta_seconds(iteration - self.iteration, rate[0] * 1000.0, evals, self.eval_cost(rate[0])[0])

    def eta(self) -> Eta | None:
        """Training left at the ETA window's speed (its fastest and slowest stretch for the range), plus the evals
        still to come (the final one included) at their mean so far. From the first step on; None before it."""
        rate = self.throughput.seconds_per_iter()
        if self.iteration is None or rate is None:
            return None
        if self._plan_end is not None and self.last is not None:
            # a run that ends at a time: its plan's end, which it keeps by re-planning (one end in every view: an
            # ETA of its own beside the plan's "done ~" read a minute apart, its range past the budget)
            left = max(0.0, self._plan_end - self.last.time)
            return Eta(left, left, left, self.throughput.steps, False)
        iters = max(0, self.max_iters - self.iteration)
        evals = evals_remaining(self.iteration, self.max_iters, self.eval_interval)
        likely, most = self.eval_cost(rate[0])
        mean, fast, slow = iters * rate[0] + evals * likely, iters * rate[1] + evals * likely, iters * rate[2] + evals * most
        return Eta(mean, min(fast, mean), max(slow, mean), self.throughput.steps, self.throughput.warm_up_only)

    @property
    def eta_seconds_per_iter(self) -> float | None:
        """The ETA's speed: the mean seconds per iteration of its window (ThroughputWindow)."""
        rate = self.throughput.seconds_per_iter()
        return rate[0] if rate is not None else None

    def eta_seconds(self) -> float | None:
        eta = self.eta()
        return eta.seconds if eta is not None else None


def _eval_batches(config: dict[str, Any], batches: int | None = None) -> float:
    """An eval's micro-batches over a step's: ``batches`` (RunStarted's, both splits; records before it: eval_iters
    of each), against gradient_accumulation_steps."""
    evals, accumulation = config.get("eval_iters"), config.get("gradient_accumulation_steps", 1)
    if batches is None and isinstance(evals, int) and evals >= 1:
        batches = 2 * evals
    if not isinstance(batches, int) or not isinstance(accumulation, int) or batches < 1 or accumulation < 1:
        return 0.0
    return batches / accumulation


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


# ---------------------------------------------------------------- training health

CLIP_WINDOW = 100  # the clip rate is the fraction of this many recent optimizer steps that were clipped


class ClipRate:
    """Fraction of the last CLIP_WINDOW optimizer steps whose gradient norm was above grad_clip."""

    def __init__(self, window: int = CLIP_WINDOW) -> None:
        self._recent: deque[bool] = deque(maxlen=window)
        self._clipped = 0

    def add(self, clipped: bool) -> float:
        if len(self._recent) == self._recent.maxlen and self._recent[0]:
            self._clipped -= 1
        self._recent.append(clipped)
        self._clipped += clipped
        return self._clipped / len(self._recent)


def loss_rise(losses: list[float]) -> tuple[float, float]:
    """The divergence test's two numbers: the median loss of a window's first quarter and of its last quarter."""
    quarter = max(1, len(losses) // 4)
    return statistics.median(losses[:quarter]), statistics.median(losses[-quarter:])


# ---------------------------------------------------------------- when the loss reaches a target

MIN_FIT_POINTS = 4  # fewer points than this in the window: no projection
FLOOR_STEPS = 20  # candidate loss floors tried between 0 and the lowest loss seen


def fit_power_law(xs: list[float], ys: list[float], floor: bool = True) -> tuple[float, float, float] | None:
    """(E, A, alpha) of L(x) = E + A·x^(-alpha) fitted by least squares on positive x.

    For each candidate floor E (0 and FLOOR_STEPS fractions of the lowest loss; only 0 when ``floor`` is
    False), log(L - E) against log x is a straight line (closed form); the floor whose curve has the least
    squared error in loss units wins. None with fewer than MIN_FIT_POINTS points.
    """
    pts = [(math.log(x), y) for x, y in zip(xs, ys) if x > 0 and math.isfinite(y) and y > 0]
    if len(pts) < MIN_FIT_POINTS:
        return None
    low = min(y for _, y in pts)
    best: tuple[float, float, float, float] | None = None
    for k in range(FLOOR_STEPS if floor else 1):
        e = low * k / FLOOR_STEPS
        us = [u for u, _ in pts]
        vs = [math.log(y - e) for _, y in pts]
        n = len(us)
        mu, mv = sum(us) / n, sum(vs) / n
        suu = sum((u - mu) ** 2 for u in us)
        if suu <= 0:
            return None
        slope = sum((u - mu) * (v - mv) for u, v in zip(us, vs)) / suu
        c = mv - slope * mu
        sse = sum((e + math.exp(c + slope * u) - y) ** 2 for u, (_, y) in zip(us, pts))
        if best is None or sse < best[0]:
            best = (sse, e, math.exp(c), -slope)
    assert best is not None
    return best[1], best[2], best[3]


def power_law_crossing(fit: tuple[float, float, float], target: float) -> float | None:
    """The x where E + A·x^(-alpha) comes down to ``target``; None when it never does (rising, or a floor above)."""
    e, a, alpha = fit
    if alpha <= 0 or a <= 0 or target <= e:
        return None
    return ((target - e) / a) ** (-1.0 / alpha)
