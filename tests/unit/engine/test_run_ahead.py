"""Running a step ahead: the next step queued on the device before this one is read (on by default on CUDA).

TUIGPT_RUN_AHEAD=1 turns it on here on the CPU, where a step "queued" is simply computed at once: the order of
every operation is the one a GPU sees, so a run ahead must train exactly as a run without it, bit for bit.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tuigpt.engine.checkpoint import load_checkpoint
from tuigpt.engine.step import run_ahead_default
from tuigpt.engine.trainer import Trainer
from tuigpt.run.errors import UserError
from tuigpt.run.commands import CheckpointNow, Resume
from tuigpt.run.events import CheckpointWritten, IterationStats, NanDetected, RunState, StateChanged

from support import PoisonFrom, Recorder, start_local


def _trainer(tiny_config, monkeypatch, ahead: bool, pause_on_trouble: bool = False,
             **overrides) -> tuple[Trainer, list[bool]]:
    """A tiny trainer with run-ahead on or off, and the list of its launches: True where one was queued behind a
    step not read yet."""
    monkeypatch.setenv("TUIGPT_RUN_AHEAD", "1" if ahead else "0")
    trainer = Trainer(tiny_config(run_name="ahead" if ahead else "inline", **overrides),
                      pause_on_trouble=pause_on_trouble)
    assert trainer.stepper.can_run_ahead is ahead
    behind: list[bool] = []
    launch = trainer.stepper.launch

    def spy(lr, detail=False, after=None, **kwargs):
        behind.append(after is not None)
        return launch(lr, detail, after, **kwargs)

    trainer.stepper.launch = spy
    return trainer, behind


def _weights(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.raw_model.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_run_ahead_is_on_for_cuda_and_off_for_the_cpu_unless_asked() -> None:
    assert run_ahead_default(torch.device("cuda", 0), {}) is True
    assert run_ahead_default(torch.device("cpu"), {}) is False
    assert run_ahead_default(torch.device("cuda", 0), {"TUIGPT_RUN_AHEAD": "0"}) is False
    assert run_ahead_default(torch.device("cpu"), {"TUIGPT_RUN_AHEAD": "1"}) is True


def test_a_bad_run_ahead_value_is_one_error_before_the_run_folder_exists(tiny_config, monkeypatch) -> None:
    monkeypatch.setenv("TUIGPT_RUN_AHEAD", "yes")
    config = tiny_config(run_name="bad")
    with pytest.raises(UserError, match=r"TUIGPT_RUN_AHEAD='yes' is not 0 or 1: use 0 \(off\), 1 \(on\)"):
        Trainer(config)
    assert not (Path(config.out_dir) / "bad").exists()


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_a_run_ahead_trains_exactly_as_one_without(tiny_config, monkeypatch, optimizer: str) -> None:
    """Same losses, learning rates, norms, update ratios, evals and final weights; steps are queued ahead except
    where the boundary has work (an eval)."""
    runs = {}
    for ahead in (False, True):
        trainer, behind = _trainer(tiny_config, monkeypatch, ahead, max_iters=24, eval_interval=10, log_interval=4,
                                   grad_clip=0.5, warmup_iters=3, optimizer=optimizer)
        rec = Recorder()
        trainer.bus.subscribe(rec)
        assert trainer.run().reason == "done" and trainer.iter_num == 24
        runs[ahead] = trainer, behind, rec
    (inline, inline_behind, inline_rec), (ahead, ahead_behind, ahead_rec) = runs[False], runs[True]
    assert not any(inline_behind)
    # 24 steps: each launched once; the first, and the one after each eval (10, 20), start a new pipeline
    assert len(ahead_behind) == 24 and ahead_behind.count(False) == 3
    fields = ("iter", "loss", "lr", "grad_norm", "clipped", "update_ratio")
    rows = [[tuple(getattr(s, f) for f in fields) for s in rec.of(IterationStats)] for rec in (inline_rec, ahead_rec)]
    assert rows[0] == rows[1] and [r[0] for r in rows[1]] == list(range(1, 25))
    assert all(r[5] is not None for r in rows[1] if r[0] % 4 == 0)  # detail steps read their update ratio
    assert all(s.ms_per_iter > 0 for s in ahead_rec.of(IterationStats))
    assert inline.last_val_loss == ahead.last_val_loss and math.isfinite(ahead.last_val_loss)
    assert _same(_weights(inline), _weights(ahead))


def test_the_step_behind_a_non_finite_one_is_skipped_and_its_batch_goes_back(tiny_config, monkeypatch) -> None:
    trainer, _ = _trainer(tiny_config, monkeypatch, True, max_iters=10, warmup_iters=0)
    stepper = trainer.stepper
    stepper.step(1e-3)  # the moments are not zero
    weights = _weights(trainer)
    param = next(trainer.raw_model.parameters())
    moments = {k: v.clone() for k, v in stepper.optimizer.state[param].items()}
    stepper.model = PoisonFrom(trainer.raw_model, at=1)
    bad = stepper.launch(1e-3)
    behind = stepper.launch(1e-3, after=bad)  # finite itself, but queued behind the bad one
    its_batch = trainer.sampler.last_starts["train"].clone()
    result = stepper.read(bad)
    assert not result.applied and result.bad == "loss"
    stepper.cancel(behind)
    assert _same(weights, _weights(trainer))  # neither step touched the weights
    assert all(torch.equal(moments[k], stepper.optimizer.state[param][k]) for k in moments)  # nor the step count
    again = stepper.step(1e-3)
    assert torch.equal(trainer.sampler.last_starts["train"], its_batch)  # the cancelled step's batch, back
    assert again.applied and not _same(weights, _weights(trainer))


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_a_nan_behind_which_a_step_ran_ahead_pauses_where_it_would_have(tiny_config, monkeypatch,
                                                                        optimizer: str) -> None:
    """The monitor pauses at the bad step; after resuming, the run is the one it would have been without
    run-ahead (a step wrongly applied behind the bad one would show in the weights)."""
    results = {}
    for ahead in (False, True):
        trainer, _ = _trainer(tiny_config, monkeypatch, ahead, True, max_iters=12, eval_interval=100,
                              optimizer=optimizer)
        trainer.stepper.model = PoisonFrom(trainer.raw_model, at=5)
        run, rec = start_local(trainer)
        rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state == RunState.PAUSED)
        assert trainer.iter_num == 4
        trainer.send(Resume())
        assert run.wait(60) and run.outcome.reason == "done" and trainer.iter_num == 12
        nan = rec.of(NanDetected)[0]
        results[ahead] = trainer, nan, [(s.iter, s.loss) for s in rec.of(IterationStats)]
    (inline, inline_nan, inline_losses), (ahead, ahead_nan, ahead_losses) = results[False], results[True]
    assert ahead_nan.iter == inline_nan.iter == 5 and ahead_nan.batch_starts == inline_nan.batch_starts
    assert ahead_nan.lr == inline_nan.lr
    assert ahead_losses == inline_losses
    assert _same(_weights(inline), _weights(ahead))


def test_a_checkpoint_asked_for_while_a_step_runs_ahead_holds_the_weights_of_its_iteration(tiny_config,
                                                                                         monkeypatch) -> None:
    """The command waits for a boundary with no step in flight; the checkpoint then holds the weights of the
    iteration it names (here the one after the request, as a run without run-ahead would write at that one)."""
    saved = {}
    for ahead in (False, True):
        trainer, _ = _trainer(tiny_config, monkeypatch, ahead, max_iters=12, eval_interval=100)
        rec = Recorder()
        trainer.bus.subscribe(rec)
        at = 6 if ahead else 7  # the inline run is asked one step later: both write at iteration 7

        def ask(event, trainer=trainer, at=at, ahead=ahead):
            if isinstance(event, IterationStats) and event.iter == at:
                trainer.send(CheckpointNow())
            if isinstance(event, CheckpointWritten) and event.reason == "command":
                saved[ahead] = load_checkpoint(event.path)  # before a later checkpoint replaces last.pt

        trainer.bus.subscribe(ask)
        assert trainer.run().reason == "done"
        assert [e.iter for e in rec.of(CheckpointWritten) if e.reason == "command"] == [7]
    assert saved[True]["iter_num"] == saved[False]["iter_num"] == 7
    assert saved[True]["model"].keys() == saved[False]["model"].keys()
    assert all(torch.equal(saved[True]["model"][k], saved[False]["model"][k]) for k in saved[True]["model"])
