"""The plan's arithmetic: the most iterations whose time fits, the cooldown's place, and a cooldown that moves
without a jump."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuigpt.run.plan import (Cooldown, Costs, block_means, evals_between, fit, planned_cooldown_start, seconds_for,
                             speed_changed, speed_noise, step_spread)

COSTS = Costs(step=0.1, eval=2.0, checkpoint=0.5)


def test_the_plan_fills_the_time_left_with_steps_evals_stable_pt_and_the_final_eval() -> None:
    plan = fit(0, 100.0, COSTS, eval_interval=100, cooldown_frac=0.2)
    # n steps of 0.1 s, an eval every 100 (2 s), stable.pt (0.5 s), the final eval (2 s)
    n = plan.total_iters
    assert seconds_for(0, n, COSTS, 100, plan.cooldown_iter) <= 100.0
    assert seconds_for(0, n + 1, COSTS, 100, planned_cooldown_start(n + 1, 0.2)) > 100.0
    assert 800 < n < 1000
    assert plan.cooldown_iter == n - round(0.2 * n)
    assert plan.seconds_to_end == pytest.approx(seconds_for(0, n, COSTS, 100, plan.cooldown_iter))
    # the cooldown begins after its iterations and the evals before it
    assert plan.seconds_to_cooldown == pytest.approx(plan.cooldown_iter * 0.1 + evals_between(0, plan.cooldown_iter, 100) * 2)


def test_evals_on_the_way_are_the_multiples_between_and_the_final_one_apart() -> None:
    assert evals_between(0, 1000, 250) == 3  # 250, 500, 750; 1000 is the final eval
    assert evals_between(250, 1001, 250) == 3  # 500, 750, 1000
    assert evals_between(10, 11, 5) == 0


def test_a_begun_cooldown_stays_and_the_cap_ends_the_run_first() -> None:
    plan = fit(500, 50.0, COSTS, eval_interval=100, cooldown_frac=0.2, cooldown_begun=480)
    assert plan.cooldown_iter == 480 and plan.seconds_to_cooldown is None
    capped = fit(0, 1e6, COSTS, eval_interval=100, cooldown_frac=0.2, cap=300)
    assert capped.total_iters == 300 and capped.capped
    assert not fit(0, 10.0, COSTS, eval_interval=100, cooldown_frac=0.2, cap=300).capped


def test_with_no_time_left_the_run_ends_where_it_is() -> None:
    plan = fit(700, 1.0, COSTS, eval_interval=100, cooldown_frac=0.2)
    assert plan.total_iters == 700
    assert fit(700, -30.0, COSTS, eval_interval=100, cooldown_frac=None).total_iters == 700


def test_the_cooldown_is_the_last_fraction_of_the_planned_iterations() -> None:
    plan = fit(0, 5.0, COSTS, eval_interval=1000, cooldown_frac=0.5)
    assert plan.total_iters == 25 and plan.cooldown_iter == 13  # 25 - round(12.5)
    assert fit(0, 5.0, COSTS, eval_interval=1000, cooldown_frac=0.2).cooldown_iter == 20


@given(left=st.floats(0, 1e5), step=st.floats(1e-3, 10), evals=st.floats(0, 100), ckpt=st.floats(0, 10),
       interval=st.integers(1, 5000), it=st.integers(0, 10_000), frac=st.sampled_from([None, 0.1, 0.2, 0.5]))
def test_the_plan_is_the_largest_run_that_fits(left: float, step: float, evals: float, ckpt: float, interval: int,
                                               it: int, frac: float | None) -> None:
    costs = Costs(step, evals, ckpt)
    plan = fit(it, left, costs, eval_interval=interval, cooldown_frac=frac)

    def stable(total: int) -> int | None:
        return None if frac is None else planned_cooldown_start(total, frac)

    assert plan.total_iters >= it
    if plan.total_iters > it:
        assert seconds_for(it, plan.total_iters, costs, interval, stable(plan.total_iters)) <= left
    assert seconds_for(it, plan.total_iters + 1, costs, interval, stable(plan.total_iters + 1)) > left


def test_a_moved_cooldown_goes_on_from_where_it_is_without_a_jump() -> None:
    c = Cooldown(start=800, end=1000, anchor_it=800)
    assert c.progress(700) == 0.0 and c.progress(800) == 0.0 and c.progress(900) == 0.5 and c.progress(1000) == 1.0
    shorter = c.moved_to(900, 950)  # a slowdown: 50 iterations left instead of 100
    assert shorter.progress(900) == pytest.approx(0.5) and shorter.progress(950) == 1.0
    assert shorter.progress(925) == pytest.approx(0.75)
    longer = c.moved_to(900, 1100)
    assert longer.progress(900) == pytest.approx(0.5) and longer.progress(1000) == pytest.approx(0.75)
    not_begun = c.moved_to(700, 1200)  # before it starts only its end moves
    assert not_begun.start == 800 and not_begun.progress(1000) == pytest.approx(0.5)


def test_a_speed_change_is_judged_against_the_noise() -> None:
    steady = step_spread([0.10, 0.11, 0.09, 0.10, 0.12, 0.08, 0.10, 0.10])
    assert steady is not None and steady.mean == pytest.approx(0.1)
    slower = step_spread([0.2] * 8)
    assert slower is not None and speed_changed(slower, 0.1, steady.relative)
    assert not speed_changed(step_spread([0.105] * 8), 0.1, steady.relative)  # type: ignore[arg-type]
    noisy = step_spread([0.05, 0.15, 0.05, 0.15, 0.05, 0.15, 0.05, 0.15])
    assert noisy is not None and not speed_changed(step_spread([0.13] * 8), 0.1, noisy.relative)  # type: ignore[arg-type]


def test_the_speeds_noise_is_its_blocks_and_a_change_of_speed_does_not_widen_it() -> None:
    # 10 ms steps, 1 in 6 stalled to 60 ms, for 5.5 s: every 1-second block has about the same mean
    steps, t = [], 0.0
    for k in range(300):
        s = 0.06 if k % 6 == 5 else 0.01
        t += s
        steps.append((t, s))
    means = block_means(steps, 1.0)
    assert len(means) == 6 and max(means) / min(means) < 1.15
    assert speed_noise(means) < 0.05  # where single steps spread 10-60 ms (p10-p90 half range / median: 2.5)
    # a 2x change inside the blocks is one large difference among small ones
    assert speed_noise([0.010, 0.0102, 0.0099, 0.0101, 0.020, 0.0202, 0.0199, 0.0201]) < 0.05
    # blocks that really vary: the noise says so (±20% alternating)
    assert speed_noise([0.008, 0.012] * 5) > 0.4
    assert speed_noise([0.01, 0.01]) is None  # too few to say


def _event(**kw):  # noqa: ANN003, ANN202
    from tuigpt.run.events import PlanUpdated

    values = dict(iter=400, total_iters=12_345, cooldown_iter=9_876, cooldown_at=NOW + 3000, end_at=NOW + 3600,
                  deadline=NOW + 3600, kind="deadline", length=8 * 3600.0, step_ms=38.2, step_spread=0.04,
                  reason="eval")
    values.update(kw)
    return PlanUpdated(**values)


NOW = 1_800_000_000.0


def test_a_plan_reads_as_its_cooldown_its_end_and_how_sure_it_is() -> None:
    from tuigpt.run.plan import clock, describe

    at = lambda t: clock(t, NOW, 8 * 3600)  # noqa: E731
    assert describe(_event(), NOW) == (f"cooldown from ~{at(NOW + 3000)} (iter 9,876), done ~{at(NOW + 3600)} · "
                                       f"12,345 iters · steps 38.2 ms ±4%")
    assert describe(_event(cooldown_begun=True, cooldown_at=None), NOW).startswith("cooling down since iter 9,876")
    assert "max_iters ends it before the deadline" in describe(_event(capped=True), NOW)
    # a run under an hour gets seconds: a 10-minute run's minutes are too coarse
    assert len(clock(NOW + 60, NOW, 600)) == 8 and len(clock(NOW + 60, NOW, 8 * 3600)) in (5, 9, 16)


def test_the_first_line_says_how_the_run_ends_and_what_max_iters_is() -> None:
    from tuigpt.run.plan import start_text

    derived = start_text("budget", "10m", NOW + 600, 0, NOW)
    assert derived.startswith("time budget 10m (run time from the start: a pause extends it), ends by ")
    assert derived.endswith("max_iters derived from the plan")
    capped = start_text("deadline", "07:00", NOW + 600, 5000, NOW)
    assert "the wall clock: a pause eats into it" in capped and capped.endswith("max_iters 5,000 caps it")
    assert start_text("", "", None, 2000, NOW) == ""


def test_a_moved_plan_says_how_far_which_way_and_why() -> None:
    from tuigpt.run.plan import moved_notice

    before = _event(step_ms=40.0)
    after = _event(step_ms=80.0, cooldown_at=NOW + 3000 - 1500, total_iters=8000, moved=-1500.0, reason="speed")
    text = moved_notice(after, before, NOW)
    assert text.startswith("plan moved 25m00s earlier: cooldown from ~") and "8,000 iters (were 12,345)" in text
    assert text.endswith("steps now take 80.0 ms (were 40.0)")
