"""Sampling can never stop training: tiny temperatures are greedy, and any failure is a warning."""

from __future__ import annotations

import pytest

from tuigpt.engine import sampling
from tuigpt.engine.trainer import Trainer
from tuigpt.run.commands import Sample, Stop
from tuigpt.run.events import Notice, RunFinished, SampleGenerated

from support import start_local, wait_for


def test_tiny_temperatures_sample_greedily(tiny_config) -> None:
    """--sample_temperature=1e-300 plus `s`, and a watcher's temperature of 1e-38: text, never a failed run."""
    trainer = Trainer(tiny_config(max_iters=100_000, eval_interval=100_000, sample_temperature=1e-300))
    run, rec = start_local(trainer, Sample(max_new_tokens=10))
    rec.wait(SampleGenerated)
    assert trainer.send(Sample(prompt="x", max_new_tokens=10, temperature=1e-38)) is None
    wait_for(lambda: len(rec.of(SampleGenerated)) == 2, 60, "the second sample")
    trainer.send(Stop(save=False))
    assert run.wait(60) and run.error is None
    assert not [n for n in rec.of(Notice) if "sampling failed" in n.message]


def test_a_sample_that_raises_is_a_warning_and_training_goes_on(tiny_config, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("probability tensor contains either inf, nan or element < 0")

    monkeypatch.setattr(sampling, "generate_text", broken)
    trainer = Trainer(tiny_config(max_iters=5, eval_interval=100))
    run, rec = start_local(trainer, Sample())
    assert run.wait(60) and run.error is None
    warnings = [n.message for n in rec.of(Notice) if n.level == "warning"]
    assert any("sampling failed, training goes on" in w and "probability tensor" in w for w in warnings)
    finished = rec.of(RunFinished)[0]
    assert finished.reason == "done" and finished.iter == 5
