"""The planner of a run that ends at a time (``time_budget`` or ``deadline``): a component of the trainer.

It measures what the run's own steps (wall to wall), evals and checkpoints take, plans the rest after every step
(:func:`tuigpt.run.plan.fit`), owns where the cooldown starts (the learning rate reads :attr:`Planner.cooldown`),
says when stable.pt is due and when training must stop, and publishes a PlanUpdated when the plan is worth
showing: at the start, after every eval, when the speed changes by more than its noise, on a pause and a resume,
and when the cooldown begins; with a Notice (topic "plan", which alerts) when the cooldown begins or its start
moves by more than a few minutes.

The clocks: a deadline is the wall clock (``time.time``); a time budget is the run's own time since the process
started (``time.monotonic``), stopped while paused.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from typing import Any, Callable

from tuigpt.run import events as ev
from tuigpt.run import fmt
from tuigpt.run import plan as pl
from tuigpt.run.deadline import RunEnd, run_end
from tuigpt.run.errors import UserError

WINDOW_SECONDS = 30.0  # the plan's step time: the mean of the steps of the last 30 s (throttling spells and
#                        the telemetry's wake-ups average out; a 2x slowdown is seen within SHORT_SECONDS)
SHORT_SECONDS = 5.0  # the newest steps a change of speed is judged on
BLOCK_SECONDS = 1.0  # a change of speed is judged against how much the means of 1-second blocks vary
MIN_STEPS = 8  # never fewer steps than this in either window
SKIP_STEPS = 3  # the first steps of a session (allocation, caches, a compile) are not its speed
REPLAN_SECONDS = 0.5  # between plans, away from the cooldown's start and the end
EVAL_WINDOW = 3  # an eval's cost: the median of the last few (each with what it wrote)
FORWARD_PER_STEP = 3.0  # before any step is timed: a step ~ 3 forward passes (forward + backward, 1 + 2)
EXIT_SECONDS = 0.5  # the process's own exit after its last line (a training run ends with os._exit once all is
#                     closed: 0.2-0.4 s on the 2-core VM, the interpreter's teardown of torch took 1.1-1.5 s)
MIN_TRAIN_SECONDS = 1.0  # less than this left after the set-up: not a run
SYNC_EVERY, SYNC_NEAR = 16, 64  # several ranks: agree every 16 iterations, and at each within 64 of a mark
UNPLANNED = 10**12  # total_iters before anything is measured (the first timed step plans it)


class Planner:
    """Plans a run to its end and keeps the plan as it goes (see the module docstring)."""

    def __init__(self, end: RunEnd, *, iteration: int, cap: int | None, eval_interval: int, eval_batches: int,
                 micro_steps: int, cooldown_frac: float | None, checkpoint_guess: float,
                 publish: Callable[[ev.Event], None], saved: dict[str, Any] | None = None,
                 wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic,
                 mono_started: float | None = None, cluster: Any = None) -> None:
        self.end = end
        self._cluster = cluster  # several ranks: rank 0 plans, every rank follows (see _agree)
        self.cap = cap
        self.eval_interval = max(1, eval_interval)
        self._eval_batches = max(1, eval_batches)  # both splits' (evaluation.eval_batches)
        self._micro_steps = micro_steps
        self.cooldown_frac = cooldown_frac
        self._publish = publish
        self._wall, self._mono = wall, mono
        self._mono_started = mono() if mono_started is None else mono_started  # the budget's clock started here
        self._steps: deque[tuple[float, float]] = deque()  # (monotonic time it ended, seconds) of recent steps
        self._steps_sum = 0.0  # of their seconds: the mean costs nothing a step
        self._last_tick: float | None = None
        self._session_steps = 0
        self._evals: deque[float] = deque(maxlen=EVAL_WINDOW)  # an eval's forward passes over the step time then
        self._step_guess: float | None = None
        self._checkpoint = checkpoint_guess
        self._writes: deque[float] = deque(maxlen=EVAL_WINDOW)
        self._paused_since: float | None = None
        self.paused_seconds, self._used_before = 0.0, 0.0  # the latter: a resumed plan's earlier sessions' time
        self.cooldown: pl.Cooldown | None = None  # set when the cooldown begins (then its start stays)
        self.stable_iter: int | None = None
        self.plan: pl.Plan | None = None
        self.total_iters = cap if cap is not None else UNPLANNED  # agreed: where training stops (the first plan sets it)
        self.last_eval_iter: int | None = None
        self._shown: ev.PlanUpdated | None = None
        self._speed_checked, self._replanned = 0.0, float("-inf")
        self._agreed_cooldown: int | None = None  # several ranks: where rank 0 planned the cooldown, last agreed
        self._capped_told = False
        if saved is not None:
            self._restore(saved, iteration)
        self._iteration = iteration

    # ------------------------------------------------------------ the clocks

    def seconds_left(self) -> float:
        """Until the end: the deadline's wall clock, or the budget less the run time used (pauses excluded)."""
        if self.end.until is not None:
            return self.end.until - self._wall()
        assert self.end.budget is not None
        paused = self.paused_seconds + (self._mono() - self._paused_since if self._paused_since is not None else 0)
        return self.end.budget - (self._mono() - self._mono_started - paused)

    def used_seconds(self) -> float:
        """Run time this plan used so far, earlier sessions of it included (what a resume of it subtracts)."""
        return self._used_before + self._mono() - self._mono_started - self.paused_seconds

    def deadline_wall(self) -> float:
        """The wall time the run must end by, as things stand."""
        return self._wall() + max(0.0, self.seconds_left()) if self.end.is_budget else float(self.end.until or 0)

    @property
    def length(self) -> float:
        """The whole run's planned length in seconds (pauses excluded): what "a few minutes" is measured on."""
        if self.end.budget is not None:
            return self.end.budget
        return max(1.0, float(self.end.until or 0) - self.end.started)

    # ------------------------------------------------------------ what the trainer tells it

    def busy(self) -> None:
        """Something that is not a step happens now (an eval, a checkpoint, a sample, a pause): the interval up to
        the next step's end is not a step's time."""
        self._last_tick = None

    def stepped(self, iteration: int) -> bool:
        """An iteration was applied: time it, plan again; True when the cooldown begins here (write stable.pt)."""
        now = self._mono()
        self._iteration = iteration
        self._session_steps += 1
        if self._last_tick is not None and self._session_steps > SKIP_STEPS:
            self._steps.append((now, now - self._last_tick))
            self._steps_sum += now - self._last_tick
            self._trim(now)
        self._last_tick = now
        if self._replan_due(iteration, now):
            self._replan(iteration)
        begins = (self.cooldown is None and self.plan is not None and self.plan.cooldown_iter is not None
                  and iteration >= self.plan.cooldown_iter)
        if self._cluster is not None:
            if not self._sync_due(iteration):
                return False
            begins = self._agree(iteration, begins)
        if begins:
            self.cooldown = pl.Cooldown(iteration, max(self.total_iters - 1, iteration), iteration, 0.0)
            self.stable_iter = iteration
            self._replan(iteration)
            self._show("cooldown", iteration)
        elif self._shown is None and len(self._steps) >= MIN_STEPS:
            self._show("start", iteration)
        elif self._speed_moved(now):
            self._show("speed", iteration)
        elif self.plan is not None and self.plan.capped and not self._capped_told:
            self._show("cap", iteration)
        return begins

    def eval_stop_at(self) -> float:
        """The ``time.monotonic()`` an eval must stop at, whatever batches it has left: where the run's end leaves
        just its checkpoints (last.pt and best.pt) and the process's exit; the run's first eval (the untrained
        one, before anything is planned) after FINAL_EVAL_SHARE of the run's length."""
        left = self.seconds_left() - EXIT_SECONDS - 2 * self._checkpoint
        if self.last_eval_iter is None:
            left = min(left, pl.FINAL_EVAL_SHARE * self.length)
        return self._mono() + left

    def evaluated(self, iteration: int, seconds: float, batches: int | None = None) -> None:
        """An eval (with what it wrote) took ``seconds``, over ``batches`` batches of both splits (fewer than
        planned when it was cut short: its cost is then scaled to a whole one)."""
        self.last_eval_iter = iteration
        if batches is not None and 0 < batches < self._eval_batches:
            seconds *= self._eval_batches / batches
        if self._step_guess is None:  # the run's first eval: its forward passes guess the step time
            self._step_guess = FORWARD_PER_STEP * seconds / self._eval_batches * self._micro_steps
        step = self._step_now()
        # an eval's forward passes are kept as a multiple of the step time then, so a machine that sped up or
        # slowed down since is judged at its speed now (a 5-minute run's untrained eval took 32 s under load, its
        # final one 19 s once the load fell); its writes (last.pt, best.pt) are counted apart
        forward = seconds - (2 * self._checkpoint if iteration > 0 else 0.0)
        if step:
            self._evals.append(max(0.0, forward) / step)
        self.busy()
        self._replan(iteration)
        if self._shown is not None and iteration < self.total_iters:  # the first plan is shown once steps were
            self._show("eval", iteration)  # timed, not on a guess; the final eval ends the plan (nothing to show)

    def ends_at(self, iteration: int) -> bool:
        """Whether training ends at ``iteration``, planned again on the time left now (an eval there has just run
        its forward passes): that eval writes the plan's last model, marked finished."""
        self._replan(iteration)
        return iteration >= self.total_iters

    def checkpointed(self, seconds: float) -> None:
        """A checkpoint took ``seconds`` to write: the plan assumes the slowest of the last few (a write's fsync
        took 0.05 s on a quiet VM and seconds under load)."""
        self._writes.append(seconds)
        self._checkpoint = max(self._writes)

    def paused(self) -> None:  # the trainer's pause; a budget's clock stops
        if self._paused_since is None:
            self._paused_since = self._mono()
            self.busy()

    def resumed(self, iteration: int) -> None:
        if self._paused_since is None:
            return
        self.paused_seconds += self._mono() - self._paused_since
        self._paused_since = None
        self.busy()
        self._replan(iteration)
        self._show("resume", iteration)

    def set_eval_interval(self, interval: int, iteration: int) -> None:
        self.eval_interval = max(1, interval)
        self._replan(iteration)

    # ------------------------------------------------------------ the plan

    def costs(self) -> pl.Costs | None:
        """What the plan assumes, or None before anything was measured. The final eval keeps at least one batch of
        each split and its checkpoints; beyond that, no more than FINAL_EVAL_SHARE of the run's length."""
        step = self._step_now()
        if step is None:
            return None
        evals = sorted(self._evals)
        eval_s = evals[len(evals) // 2] * step + 2 * self._checkpoint if evals else 0.0
        least = eval_s * 2 / self._eval_batches + 2 * self._checkpoint
        final = max(least, pl.FINAL_EVAL_SHARE * self.length)
        return pl.Costs(step, eval_s, self._checkpoint, final)

    def _step_now(self) -> float | None:
        """The step time the plan assumes: the mean of the recent steps, or the guess before any was timed."""
        return self._steps_sum / len(self._steps) if self._steps else self._step_guess

    def _replan_due(self, iteration: int, now: float) -> bool:
        """Every step near the end and near the cooldown's start (where an iteration matters); elsewhere every
        REPLAN_SECONDS (a plan costs ~60 us: 3% of a 2 ms GPU step)."""
        if self.plan is None or now - self._replanned >= REPLAN_SECONDS:
            return True
        step = self._steps_sum / len(self._steps) if self._steps else 0.0
        near = 2 * REPLAN_SECONDS / step if step > 0 else 0
        marks = [self.total_iters] + ([self.plan.cooldown_iter] if self.plan.cooldown_iter is not None else [])
        return any(0 <= mark - iteration <= near for mark in marks)

    def _replan(self, iteration: int) -> None:
        costs = self.costs()
        if costs is None:
            return
        self._replanned = self._mono()
        self.plan = pl.fit(iteration, self.seconds_left() - EXIT_SECONDS, costs, eval_interval=self.eval_interval,
                           cooldown_frac=self.cooldown_frac,
                           cooldown_begun=self.cooldown.start if self.cooldown is not None else None, cap=self.cap)
        if not self._steps and self.plan.total_iters < iteration + SKIP_STEPS + 1 and \
                (self.cap is None or self.cap > iteration + SKIP_STEPS):
            # the step time is still a guess from the first eval's forward passes (an eval that compiled its model
            # took 17.7 s and made a 1-minute run "done at iter 0"): train until a step is timed, then plan on it
            self.plan = dataclasses.replace(self.plan, total_iters=iteration + SKIP_STEPS + 1)
        if self._cluster is None:  # one process: the plan applies at once (several: at the next agreement)
            self._set_total(iteration, self.plan.total_iters)

    def _set_total(self, iteration: int, total: int) -> None:
        """Where training stops; the cooldown ends with it: its last step (index total - 1) runs at min_lr, however
        late the plan moved, so the schedule is complete when the run ends."""
        self.total_iters = total
        if self.cooldown is not None and self.cooldown.end != total - 1:
            self.cooldown = self.cooldown.moved_to(iteration, total - 1)

    def _sync_due(self, iteration: int) -> bool:
        """Several ranks agree on the plan every SYNC_EVERY iterations, and at every iteration near the agreed end
        or the agreed start of the cooldown (where one iteration matters): a rule of agreed values alone, so every
        rank calls the broadcast at the same iterations."""
        if iteration % SYNC_EVERY == 0 or self.total_iters - iteration <= SYNC_NEAR:
            return True
        return self.cooldown is None and self._agreed_cooldown is not None and \
            abs(self._agreed_cooldown - iteration) <= SYNC_NEAR

    def _agree(self, iteration: int, begins: bool) -> bool:
        """Rank 0's plan on every rank: [where training stops, whether the cooldown begins now, where rank 0 plans
        it]. The anchoring of a moved cooldown is the same arithmetic on every rank, so their learning rates
        stay equal."""
        planned_cooldown = self.plan.cooldown_iter if self.plan is not None and self.plan.cooldown_iter is not None \
            else -1
        mine = [self.plan.total_iters if self.plan is not None else self.total_iters, int(begins), planned_cooldown]
        total, begin, cooldown = self._cluster.broadcast_words(mine if self._cluster.rank == 0 else None, 3)
        self._agreed_cooldown = cooldown if cooldown >= 0 else None
        self._set_total(iteration, int(total))
        return bool(begin) and self.cooldown is None

    def _window(self, seconds: float) -> list[float]:
        """The step times of the last ``seconds`` (at least MIN_STEPS of them when there are)."""
        if not self._steps:
            return []
        newest = self._steps[-1][0]
        out = [s for t, s in self._steps if newest - t <= seconds]
        if len(out) < MIN_STEPS:
            out = [s for _, s in list(self._steps)[-MIN_STEPS:]]
        return out

    def _trim(self, now: float, seconds: float = WINDOW_SECONDS) -> None:
        """Drop the steps older than ``seconds`` (MIN_STEPS stay)."""
        while len(self._steps) > MIN_STEPS and now - self._steps[0][0] > seconds:
            self._steps_sum -= self._steps.popleft()[1]
        if not self._steps:
            self._steps_sum = 0.0

    def _speed_noise(self) -> float | None:
        """How much the window's 1-second means vary from one to the next (None before 3 s of steps): single steps
        vary more than the speed does (a cgroup's CPU quota stops a process for 50 ms of every 100: 10 ms steps,
        1 in 6 of them 60 ms)."""
        return pl.speed_noise(pl.block_means(self._steps, BLOCK_SECONDS))

    def _speed_moved(self, now: float) -> bool:
        """The newest steps' mean differs from the shown plan's step time by more than noise: the window restarts
        at the change, so the plan follows the new speed at once."""
        if self._shown is None or now - self._speed_checked < SHORT_SECONDS:
            return False
        self._speed_checked = now
        newest = self._steps[-1][0] if self._steps else now
        recent = pl.step_spread([s for t, s in self._steps if newest - t <= SHORT_SECONDS])
        if recent is None or recent.n < MIN_STEPS:
            return False
        # judged against the speed's noise, not single steps' spread: p10-p90 of the steps themselves, or of blocks
        # spanning a change, hid a 2x slowdown after a first plan that saw part of it (16.3 ms against 22.5)
        noise = self._speed_noise()
        if not pl.speed_changed(recent, self._shown.step_ms / 1000.0, recent.relative if noise is None else noise):
            return False
        self._trim(now, SHORT_SECONDS)
        self._steps_sum = sum(s for _, s in self._steps)  # no rounding drift carried over the change
        self._replan(self._iteration)
        return True

    def _show(self, reason: str, iteration: int) -> None:
        self._replan(iteration)  # what is shown is planned now, on the costs shown with it
        plan, costs = self.plan, self.costs()
        if plan is None or costs is None:
            return
        now = self._wall()
        # how sure: the speed's noise (single steps' spread until 3 s are timed; a CPU quota's 10 and 60 ms steps
        # made that ±250% for a speed steady to ±5%)
        noise = self._speed_noise()
        if noise is None:
            spread = pl.step_spread(self._window(WINDOW_SECONDS))
            noise = spread.relative if spread is not None else 0.0
        cooldown_at = now + plan.seconds_to_cooldown if plan.seconds_to_cooldown is not None else None
        end_at = now + plan.seconds_to_end
        before = self._shown
        moved = 0.0
        if before is not None:
            if cooldown_at is not None and before.cooldown_at is not None:
                moved = cooldown_at - before.cooldown_at
            elif self.cooldown is not None and reason != "cooldown":
                moved = end_at - before.end_at
        event = ev.PlanUpdated(
            iter=iteration, total_iters=plan.total_iters, cooldown_iter=plan.cooldown_iter, cooldown_at=cooldown_at,
            end_at=end_at, deadline=self.deadline_wall(), kind=self.end.kind, length=self.length,
            step_ms=costs.step * 1000.0, step_spread=noise, reason=reason,
            cooldown_begun=self.cooldown is not None, capped=plan.capped, moved=moved,
            iters_before=before.total_iters if before is not None else None)
        self._shown = event
        self._capped_told = self._capped_told or plan.capped
        self._publish(event)
        if reason == "cooldown":
            self._publish(ev.Notice(level="info", topic="plan", message=pl.cooldown_notice(event, now)))
        elif reason not in ("start", "resume") and abs(moved) > pl.move_threshold(self.length):
            self._publish(ev.Notice(level="warning", topic="plan", message=pl.moved_notice(event, before, now)))

    # ------------------------------------------------------------ checkpoints

    def state_dict(self, iteration: int) -> dict[str, Any]:
        """What a checkpoint keeps of the plan: its end, the run time used, and the cooldown's place."""
        c, costs = self.cooldown, self.costs()
        return {"kind": self.end.kind, "text": self.end.text, "until": self.end.until, "budget": self.end.budget,
                "used": self.used_seconds(), "total_iters": self.total_iters, "iter": iteration,
                "stable_iter": self.stable_iter, "finished": iteration >= self.total_iters,
                "cooldown": None if c is None else [c.start, c.end, c.anchor_it, c.anchor_p],
                "step_s": costs.step if costs is not None else None, "checkpoint_s": self._checkpoint}

    def _restore(self, saved: dict[str, Any], iteration: int) -> None:
        """A resume that goes on with the same plan: its cooldown, if begun, continues to the new end."""
        cooldown = saved.get("cooldown")
        if cooldown is not None and iteration > int(cooldown[0]):
            start, end, anchor_it, anchor_p = cooldown
            self.cooldown = pl.Cooldown(int(start), int(end), int(anchor_it), float(anchor_p))
            self.stable_iter = saved.get("stable_iter")
        if isinstance(saved.get("step_s"), (int, float)):
            self._step_guess = float(saved["step_s"])
        if isinstance(saved.get("checkpoint_s"), (int, float)):
            self._checkpoint = float(saved["checkpoint_s"])
        if isinstance(saved.get("used"), (int, float)):
            self._used_before = float(saved["used"])



# ---------------------------------------------------------------- set-up

CHECKPOINT_BYTES_PER_S = 200e6  # before the first write is timed: weights and two AdamW moments at ~200 MB/s


def process_started() -> tuple[float, float]:
    """(wall, monotonic) time this process started: a time budget counts from the moment the user started the run,
    its set-up (data, dtype/compile trials, model) included. Its age comes from /proc (its start in clock ticks
    since boot against the uptime: 10 ms steps); psutil's create_time adds the boot time, which /proc/stat gives
    in whole seconds (a budget would be up to a second short)."""
    age = _process_age()
    return time.time() - age, time.monotonic() - age


def _process_age() -> float:
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - no process table: count from now
        return 0.0


def make_planner(config: Any, saved: dict[str, Any] | None, iteration: int, micro_steps: int, n_params: int,
                 publish: Callable[[ev.Event], None], cluster: Any = None, eval_batches: int | None = None
                 ) -> Planner | None:
    """The planner of a run whose config ends it at a time (None otherwise). On a resume whose checkpoint was
    planned to the same end and did not finish it, the plan goes on: a deadline stays the same clock time, a time
    budget keeps what was left of it. UserError when the time is already spent, or less than the set-up took."""
    if not config.planned:
        return None
    wall, mono = process_started()
    end = run_end(config.time_budget, config.deadline, wall, wall)
    assert end is not None
    continued = continues(saved, end.kind, end.text)
    if continued and saved is not None:
        if end.is_budget:
            end = RunEnd("budget", budget=max(0.0, float(end.budget or 0) - float(saved.get("used") or 0)),
                         started=wall, text=end.text)
        else:
            end = RunEnd("deadline", until=float(saved["until"]), started=wall, text=end.text)
    planner = Planner(end, iteration=iteration, cap=config.max_iters, eval_interval=config.eval_interval,
                      eval_batches=eval_batches or 2 * config.eval_iters, micro_steps=micro_steps,
                      cooldown_frac=config.cooldown_frac if config.decay_lr else None,
                      checkpoint_guess=0.02 + 12 * n_params / CHECKPOINT_BYTES_PER_S, publish=publish,
                      saved=saved if continued else None, mono_started=mono, cluster=cluster)
    setup = time.time() - wall
    left = planner.seconds_left()
    what = f"--time {end.text}" if end.is_budget else f"--until {end.text}"
    if continued and left <= 0:
        raise UserError(f"{what}: the resumed run's time is already up (it was planned to end "
                        f"{fmt.clock(end.end_wall(0.0))}); give a new end, e.g. --time 1h")
    if left < max(setup, MIN_TRAIN_SECONDS) and (cluster is None or cluster.rank == 0):  # rank 0's clock decides
        need = fmt.duration(max(60.0, 4 * setup))
        raise UserError(f"{what} leaves {fmt.duration(max(0.0, left))} to train after a set-up of "
                        f"{fmt.duration(setup)} here: give at least {need}")
    return planner


def planned_config(config: Any) -> tuple[Any, list[str]]:
    """The config a run that ends at a time trains with: schedule wsd (cosine's decay is fixed by max_iters from
    the first step; a cooldown can be planned to the end), lr_decay_iters unused (the plan ends the schedule);
    and what the user is told about it."""
    if not config.planned:
        return config, []
    notices, changes = [], {}
    if config.decay_lr and config.schedule != "wsd":
        changes["schedule"] = "wsd"
        notices.append(f"schedule wsd instead of {config.schedule}: a run that ends at a time holds the peak learning "
                       f"rate and plans its cooldown (the last cooldown_frac {config.cooldown_frac:g} of its "
                       f"iterations) to end on time; {config.schedule}'s decay is fixed by max_iters from the start")
    if config.lr_decay_iters is not None:
        changes["lr_decay_iters"] = None
        notices.append(f"lr_decay_iters {config.lr_decay_iters:,} is not used: the plan ends the schedule where the "
                       f"run ends")
    return (dataclasses.replace(config, **changes) if changes else config), notices


def continues(saved: dict[str, Any] | None, kind: str, text: str) -> bool:
    """Whether a resumed checkpoint's plan goes on: the same kind of end, as the user wrote it, and not finished."""
    if not isinstance(saved, dict) or saved.get("finished"):
        return False
    if kind == "deadline" and not isinstance(saved.get("until"), (int, float)):
        return False
    return saved.get("kind") == kind and saved.get("text") == text.strip()

