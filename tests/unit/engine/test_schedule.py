"""The learning-rate schedule."""

from __future__ import annotations

import pytest

from tuigpt.engine.schedule import cooldown_from, cooldown_start, lr_at, lr_for

SCHED = dict(learning_rate=1e-3, min_lr=1e-4, warmup_iters=10, lr_decay_iters=110, decay_lr=True)


def test_warmup_is_linear_up_to_the_peak() -> None:
    lrs = [lr_at(i, **SCHED) for i in range(10)]
    assert lrs[0] == pytest.approx(1e-3 / 11)
    assert all(b > a for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(1e-3 * 10 / 11)


def test_cosine_decay_reaches_min_lr_and_stays() -> None:
    assert lr_at(10, **SCHED) == pytest.approx(1e-3)
    assert lr_at(60, **SCHED) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))  # halfway: mean of peak and floor
    assert lr_at(110, **SCHED) == pytest.approx(1e-4)
    assert lr_at(5000, **SCHED) == pytest.approx(1e-4)
    decay = [lr_at(i, **SCHED) for i in range(10, 111)]
    assert all(b <= a for a, b in zip(decay, decay[1:]))


def test_constant_when_decay_is_off() -> None:
    assert lr_at(0, **{**SCHED, "decay_lr": False}) == 1e-3
    assert lr_at(100, **{**SCHED, "decay_lr": False}) == 1e-3


WSD = dict(SCHED, schedule="wsd", cooldown_frac=0.25)  # 110-step run: cooldown over the last 28 (82 → 110)


def test_wsd_holds_the_peak_until_the_cooldown_then_falls_linearly_to_min_lr() -> None:
    assert [lr_at(i, **WSD) for i in range(10)] == [lr_at(i, **SCHED) for i in range(10)]  # the same warmup
    assert all(lr_at(i, **WSD) == 1e-3 for i in range(10, 83))  # stable at the peak through step 82
    assert lr_at(96, **WSD) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))  # halfway down the cooldown
    cooldown = [lr_at(i, **WSD) for i in range(82, 111)]
    steps = [a - b for a, b in zip(cooldown, cooldown[1:])]
    assert all(s == pytest.approx(steps[0]) for s in steps) and steps[0] > 0  # a straight line
    assert lr_at(110, **WSD) == pytest.approx(1e-4) and lr_at(10_000, **WSD) == pytest.approx(1e-4)


def test_a_cosine_cooldown_has_the_same_ends_and_midpoint_but_starts_gently() -> None:
    shaped = {**WSD, "cooldown_shape": "cosine"}
    assert lr_at(82, **shaped) == pytest.approx(1e-3) and lr_at(110, **shaped) == pytest.approx(1e-4)
    assert lr_at(96, **shaped) == pytest.approx(lr_at(96, **WSD))
    assert lr_at(84, **shaped) > lr_at(84, **WSD)  # flat at first, steep in the middle
    assert lr_at(108, **shaped) < lr_at(108, **WSD)


def test_the_cooldown_never_starts_inside_the_warmup() -> None:
    assert cooldown_start(warmup_iters=10, lr_decay_iters=110, cooldown_frac=0.25) == 82
    assert cooldown_start(warmup_iters=10, lr_decay_iters=110, cooldown_frac=1.0) == 10  # all of it after the warmup
    assert cooldown_start(warmup_iters=10, lr_decay_iters=110, cooldown_frac=0.0) == 110  # no cooldown: constant
    assert all(lr_at(i, **{**WSD, "cooldown_frac": 0.0}) == 1e-3 for i in range(10, 110))


def test_cooldown_from_is_read_from_a_config_and_none_without_a_cooldown() -> None:
    from tuigpt.run.config import TrainConfig

    assert cooldown_from(TrainConfig(max_iters=2000, warmup_iters=100, schedule="wsd", cooldown_frac=0.2)) == 1600
    assert cooldown_from(TrainConfig(max_iters=2000, lr_decay_iters=1000, schedule="wsd", cooldown_frac=0.5)) == 500
    assert cooldown_from(TrainConfig(schedule="cosine")) is None
    assert cooldown_from(TrainConfig(schedule="wsd", decay_lr=False)) is None
    config = TrainConfig(max_iters=2000, warmup_iters=100, schedule="wsd", cooldown_frac=0.2)
    # the knee of the learning-rate curve, counted in iterations done: the step taken after 1,600 runs at the peak,
    # every step after it lower
    assert lr_for(config, 1599) == lr_for(config, 1600) == config.learning_rate > lr_for(config, 1601)


def test_old_configs_keep_the_cosine_schedule() -> None:
    from tuigpt.run.config import TrainConfig

    config = TrainConfig(max_iters=110, warmup_iters=10, learning_rate=1e-3, min_lr=1e-4)
    assert config.schedule == "cosine"
    assert [lr_for(config, i) for i in range(120)] == [lr_at(i, **SCHED) for i in range(120)]

def test_a_run_that_ends_before_its_decay_says_so_and_names_the_key() -> None:
    """`--max_iters=400` on a config with lr_decay_iters 1000 trained its last step at 2.1e-3, silently (issue 27)."""
    from tuigpt.engine.schedule import lr_at_last_iteration, unfinished_schedule
    from tuigpt.run.config import TrainConfig

    cpu_optimized = dict(learning_rate=3e-3, min_lr=1e-5, warmup_iters=50, lr_decay_iters=1000)
    short = TrainConfig(**cpu_optimized, max_iters=400)
    assert lr_at_last_iteration(short) == pytest.approx(2.1e-3, rel=0.01)
    said = unfinished_schedule(short)
    assert said is not None and said.startswith("the learning rate will still be 2.11e-03 at the last iteration (400)")
    assert "lr_decay_iters=1000 is beyond max_iters=400" in said and said.endswith("add --lr_decay_iters=400")
    assert unfinished_schedule(TrainConfig(**cpu_optimized, max_iters=1000)) is None  # decays to the end
    assert unfinished_schedule(TrainConfig(**{**cpu_optimized, "lr_decay_iters": None}, max_iters=400)) is None
    assert unfinished_schedule(TrainConfig(**cpu_optimized, max_iters=1020)) is None  # at the floor a little early
    assert unfinished_schedule(TrainConfig(**cpu_optimized, max_iters=400, decay_lr=False)) is None  # constant by choice
    wsd = unfinished_schedule(TrainConfig(**cpu_optimized, max_iters=400, schedule="wsd", cooldown_frac=0.2))
    assert wsd is not None and "the WSD cooldown is cut short" in wsd and wsd.endswith("add --lr_decay_iters=400")
    assert unfinished_schedule(TrainConfig(**cpu_optimized, max_iters=400, schedule="wsd", cooldown_frac=0.0)) is None
    warming = unfinished_schedule(TrainConfig(**{**cpu_optimized, "warmup_iters": 100}, max_iters=60))
    assert warming is not None and "warmup_iters=100 is not shorter than max_iters=60" in warming


def test_the_run_says_it_before_training(tiny_config) -> None:
    from tuigpt.engine.trainer import Trainer
    from tuigpt.run.events import Notice

    trainer = Trainer(tiny_config(max_iters=10, lr_decay_iters=100))
    try:
        warnings = [n for n in trainer.pending_notices if isinstance(n, Notice) and n.level == "warning"]
        assert any("add --lr_decay_iters=10" in n.message for n in warnings), trainer.pending_notices
    finally:
        trainer.close(remove_dir=True)
