"""The learning-rate schedule."""

from __future__ import annotations

import pytest

from tuigpt.engine.schedule import lr_at

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
