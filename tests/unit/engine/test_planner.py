"""The planner on a simulated clock: a run that ends at a time ends on time when its machine slows down, when it
is paused, and whatever its first guess was; it says so when the plan moves."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

import pytest

from tuigpt.engine.planner import EXIT_SECONDS, Planner, continues
from tuigpt.run.deadline import RunEnd
from tuigpt.run.events import Event, Notice, PlanUpdated

START = 1_800_000_000.0  # the wall clock at the simulated process start


@dataclass
class Sim:
    """A trainer's loop as the planner sees it, on a fake clock: ``step(i)`` is how long iteration i takes."""

    end: RunEnd
    step: object = lambda i: 0.05  # noqa: E731
    eval_s: float = 1.0
    checkpoint_s: float = 0.1
    eval_interval: int = 200
    cap: int | None = None
    mono: float = 0.0
    events: list[Event] = field(default_factory=list)
    pause_at: int | None = None
    pause_s: float = 0.0

    @property
    def wall(self) -> float:
        return START + self.mono

    def run(self, setup: float = 2.0) -> tuple[Planner, int]:
        self.mono = setup
        p = Planner(self.end, iteration=0, cap=self.cap, eval_interval=self.eval_interval, eval_batches=40, micro_steps=1,
                    cooldown_frac=0.2, checkpoint_guess=self.checkpoint_s, publish=self.events.append,
                    wall=lambda: self.wall, mono=lambda: self.mono, mono_started=0.0)
        self.chore(p, 0, self.eval_s * 0.5)  # the untrained eval writes nothing
        it = 0
        while it < p.total_iters:
            if self.pause_at is not None and it == self.pause_at:
                p.paused()
                self.mono += self.pause_s
                p.resumed(it)
            self.mono += self.step(it)  # type: ignore[operator]
            it += 1
            if p.stepped(it):
                p.busy()
                self.mono += self.checkpoint_s
                p.checkpointed(self.checkpoint_s)
            if it % p.eval_interval == 0 or it == p.total_iters:
                self.chore(p, it, self.eval_s)
        return p, it

    def chore(self, p: Planner, it: int, seconds: float) -> None:
        """An eval as the trainer's: its batches stop at the planner's stop time (one of each split at least),
        then it writes last.pt and best.pt (``seconds`` is the whole of it, as the trainer measures it)."""
        p.busy()
        batches = 40  # both splits
        writes = 2 * self.checkpoint_s if it else 0.0  # the untrained eval writes nothing
        forward = (seconds - writes) * self.step(it) / self.step(0)  # type: ignore[operator]  # slowed as the steps are
        available = p.eval_stop_at() - self.mono
        if available < forward:
            batches = max(2, int(batches * available / forward))
            forward = forward * batches / 40
        self.mono += forward + writes
        p.evaluated(it, forward + writes, batches)

    def plans(self) -> list[PlanUpdated]:
        return [e for e in self.events if isinstance(e, PlanUpdated)]


def test_a_budget_ends_on_time_with_its_cooldown_complete() -> None:
    sim = Sim(RunEnd("budget", budget=120.0, started=START, text="2m"))
    planner, last = sim.run()
    assert sim.mono + EXIT_SECONDS == pytest.approx(120.0, abs=0.2)  # the final eval and checkpoint included
    assert planner.cooldown is not None and planner.cooldown.progress(last) == 1.0  # the schedule is complete
    plans = sim.plans()
    assert plans[0].reason == "start" and any(p.reason == "cooldown" for p in plans)
    assert abs(plans[0].end_at - (START + 120.0)) < 2.0
    assert planner.cooldown.start == pytest.approx(0.8 * last, abs=2)


def test_a_2x_slowdown_halfway_is_followed_and_the_run_still_ends_on_time() -> None:
    sim = Sim(RunEnd("budget", budget=1200.0, started=START, text="20m"), eval_interval=1000)
    sim.step = lambda i: 0.05 if i < 11500 else 0.1  # about halfway
    planner, last = sim.run()
    assert sim.mono + EXIT_SECONDS == pytest.approx(1200.0, abs=0.3)
    plans = sim.plans()
    speed = [p for p in plans if p.reason == "speed"]
    assert speed and speed[0].step_ms == pytest.approx(100.0, rel=0.1)
    assert speed[0].total_iters < plans[0].total_iters * 0.85  # fewer iterations fit now
    moved = [e for e in sim.events if isinstance(e, Notice) and e.topic == "plan" and "moved" in e.message]
    assert moved and "earlier" in moved[0].message  # the cooldown begins earlier than first planned: the user is told
    assert planner.cooldown is not None and planner.cooldown.progress(last) == 1.0


def _quota_step(sim: Sim, slowed_from: float, rnd: random.Random) -> Callable[[int], float]:
    """10-12 ms steps; from ``slowed_from`` on, the process runs only in the second half of every 100 ms, as a
    cgroup's CPU quota of half a core lets it: 1 step in 6 or so takes 60 ms, the rest their own time."""

    def step(i: int) -> float:
        t = left = 0.0105 * (1 + 0.15 * rnd.random())
        if sim.mono < slowed_from:
            return t
        end = sim.mono
        while left > 1e-12:
            phase = (end - slowed_from) % 0.1
            if phase < 0.05 - 1e-9:  # stopped
                end += 0.05 - phase
            else:
                run = min(left, 0.1 - phase) + 1e-9  # past the period's end: float rounding must not stall
                end, left = end + run, left - run
        return end - sim.mono

    return step


@pytest.mark.parametrize("offset", [0.0, 1.25, 2.5, 3.75])  # where the slowdown falls between two speed checks
def test_a_cpu_quotas_slowdown_is_followed_to_its_whole_speed_between_evals(offset: float) -> None:
    sim = Sim(RunEnd("budget", budget=60.0, started=START, text="60s"), eval_interval=100_000, eval_s=0.3,
              checkpoint_s=0.02)
    sim.step = _quota_step(sim, 28.0 + offset, random.Random(offset))
    sim.run()
    assert sim.mono + EXIT_SECONDS == pytest.approx(60.0, abs=0.5)
    plans = sim.plans()
    before = [p for p in plans if p.reason == "start"][0]
    speed = [p for p in plans if p.reason == "speed"]
    # a first plan may see part of the slowdown (16.3 ms against 22.5); a later one, not an eval, sees all of it
    assert speed and speed[-1].step_ms > 1.8 * before.step_ms, [(p.reason, round(p.step_ms, 1)) for p in plans]
    # and says how sure it is by how the speed varies, not by its 10 and 60 ms steps (±250%)
    assert speed[-1].step_spread < 0.2, speed[-1]


def test_steady_steps_with_rare_long_ones_do_not_announce_a_change_of_speed() -> None:
    rnd = random.Random(7)
    sim = Sim(RunEnd("budget", budget=60.0, started=START, text="60s"), eval_interval=100_000, eval_s=0.3,
              checkpoint_s=0.02)
    sim.step = lambda i: 0.1 if rnd.random() < 0.05 else 0.01 * (1 + 0.5 * rnd.random())  # a GC, a wake-up
    sim.run()
    plans = sim.plans()
    first = [p for p in plans if p.reason == "start"][0]
    # the first plan, on the first 8 steps timed, may be corrected once the first 5 s are (a "speed" plan then);
    # after that the speed is the same all along, and nothing says it changed
    later = [p for p in plans if p.reason == "speed" and p.time > first.time + 5.5]
    assert not later, [(p.reason, round(p.time - START), round(p.step_ms, 1)) for p in plans]


def test_a_slowdown_inside_the_cooldown_shortens_it_without_a_jump() -> None:
    sim = Sim(RunEnd("budget", budget=100.0, started=START, text="100s"))
    sim.step = lambda i: 0.05 if i < 1600 else 0.1
    planner, last = sim.run()
    assert sim.mono + EXIT_SECONDS == pytest.approx(100.0, abs=0.3)
    assert planner.cooldown is not None and planner.cooldown.start < 1600 and planner.cooldown.progress(last) == 1.0


def test_a_pause_extends_a_budget_and_eats_into_a_deadline() -> None:
    budget = Sim(RunEnd("budget", budget=120.0, started=START, text="2m"), pause_at=500, pause_s=30.0)
    _, budget_iters = budget.run()
    assert budget.mono + EXIT_SECONDS == pytest.approx(150.0, abs=0.3)  # 2 minutes of run time, and the 30 s pause
    deadline = Sim(RunEnd("deadline", until=START + 120.0, started=START, text="x"), pause_at=500, pause_s=30.0)
    _, deadline_iters = deadline.run()
    assert deadline.mono + EXIT_SECONDS == pytest.approx(120.0, abs=0.3)  # the wall clock: the pause's 30 s are lost to training
    assert deadline_iters < budget_iters * 0.8
    assert [p.reason for p in deadline.plans()].count("resume") == 1


def test_max_iters_caps_the_plan_and_says_so() -> None:
    sim = Sim(RunEnd("budget", budget=120.0, started=START, text="2m"), cap=600)
    planner, last = sim.run()
    assert last == 600 and sim.mono < 60
    assert any(p.reason == "cap" and p.capped for p in sim.plans())
    assert planner.cooldown is not None and planner.cooldown.start == 480


def test_a_run_with_too_little_time_left_still_ends_with_its_final_eval() -> None:
    sim = Sim(RunEnd("budget", budget=3.0, started=START, text="3s"))
    planner, last = sim.run()
    assert planner.last_eval_iter == last and sim.mono < 6


def test_a_first_eval_that_compiled_does_not_end_the_run_on_its_guess() -> None:
    """A cold compile cache: the untrained eval's one batch took 17.7 s of a 1-minute budget (its model compiled),
    scaled to a whole eval of 20 batches a split; the step time guessed from it (~27 s) ended the run at iteration
    0, nothing trained. The plan now trains until a step is timed, then plans on it."""
    from tuigpt.engine.planner import SKIP_STEPS

    clock = [18.7]
    p = Planner(RunEnd("budget", budget=60.0, started=START, text="1m"), iteration=0, cap=None, eval_interval=250,
                eval_batches=40, micro_steps=1, cooldown_frac=0.2, checkpoint_guess=0.05, publish=lambda e: None,
                wall=lambda: START + clock[0], mono=lambda: clock[0], mono_started=0.0)
    p.evaluated(0, 17.7, batches=2)
    assert p.total_iters >= SKIP_STEPS + 1  # not "done at iter 0"
    it = 0
    while it < p.total_iters:  # then 0.1 s steps (the first one compiles: 21 s)
        clock[0] += 21.0 if it == 0 else 0.1
        it += 1
        p.stepped(it)
    assert it > 50 and clock[0] < 60.0


def test_a_resume_goes_on_with_the_same_unfinished_plan_only() -> None:
    saved = {"kind": "budget", "text": "8h", "finished": False, "used": 3600.0}
    assert continues(saved, "budget", "8h")
    assert not continues(saved, "budget", "2h")  # a new end: a new plan
    assert not continues({**saved, "finished": True}, "budget", "8h")
    assert not continues({**saved, "kind": "deadline"}, "deadline", "8h")  # a deadline needs its clock time


class TwoRanks:
    """A broadcast between two threads (what Cluster.broadcast_words does between processes)."""

    def __init__(self) -> None:
        import threading

        self.barrier = threading.Barrier(2, timeout=30)
        self.slot: list[int] = []

    def rank(self, rank: int) -> object:
        group = self

        class Rank:
            def __init__(self) -> None:
                self.rank = rank
                self.calls = 0

            def broadcast_words(self, words: list[int] | None, size: int) -> list[int]:
                self.calls += 1
                if rank == 0:
                    group.slot = list(words or [])
                group.barrier.wait()
                out = list(group.slot)
                group.barrier.wait()
                return out

        return Rank()


def test_several_ranks_follow_rank_0s_plan_at_the_same_iterations() -> None:
    import threading

    from tuigpt.engine.schedule import lr_planned
    from tuigpt.run.config import TrainConfig

    group = TwoRanks()
    config = TrainConfig(learning_rate=1e-3, min_lr=1e-4, max_iters=None, time_budget="2m")
    seen: dict[int, list[tuple[int, int, float]]] = {0: [], 1: []}

    def rank(r: int) -> None:
        sim = Sim(RunEnd("budget", budget=120.0, started=START, text="2m"))
        sim.step = (lambda i: 0.05 if i < 1000 else 0.1) if r == 0 else (lambda i: 0.03)  # rank 1's clock differs
        p = Planner(sim.end, iteration=0, cap=None, eval_interval=200, eval_batches=40, micro_steps=1, cooldown_frac=0.2, checkpoint_guess=0.1, publish=sim.events.append, wall=lambda: sim.wall,
                    mono=lambda: sim.mono, mono_started=0.0, cluster=group.rank(r))
        sim.chore(p, 0, 0.5)
        it = 0
        while it < p.total_iters:
            sim.mono += sim.step(it)  # type: ignore[operator]
            it += 1
            p.stepped(it)
            seen[r].append((it, p.total_iters, lr_planned(config, it, p.cooldown)))
            if it % p.eval_interval == 0 or it == p.total_iters:
                sim.chore(p, it, 1.0)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen[0] and seen[0] == seen[1]  # the same stops, the same learning rate at every iteration
    assert seen[0][-1][2] < 2e-4  # cooled down


def test_evals_that_would_take_half_the_time_are_cut_and_the_run_still_trains_and_ends_on_time() -> None:
    # a machine slowed 10x: a whole eval would take 60 s of a 2-minute budget (seen on the loaded 2-core VM)
    sim = Sim(RunEnd("budget", budget=120.0, started=START, text="2m"), eval_s=60.0, eval_interval=100_000)
    sim.step = lambda i: 4.5  # a step: three forward passes of the eval's 40 batches of 1.5 s
    planner, last = sim.run(setup=10.0)
    assert sim.mono + EXIT_SECONDS == pytest.approx(120.0, abs=4.5)  # within a step
    assert last > 10  # it trained, rather than ending after a whole untrained eval
    assert planner.last_eval_iter == last
