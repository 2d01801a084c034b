"""Runs that meet trouble: NaN losses, loss spikes, a full disk, models too big for memory."""

from __future__ import annotations

import errno

import pytest
import torch

import tuigpt.engine.checkpoint
from tuigpt.engine.checkpoint import load_checkpoint
from tuigpt.run.errors import UserError
from tuigpt.run.commands import CheckpointNow, Resume, Stop
from tuigpt.run.events import Notice, RunState, StateChanged
from tuigpt.engine.memory import estimate_training_memory
from tuigpt.engine.model import ModelArgs
from tuigpt.engine.trainer import Trainer

from support import PoisonFrom, Recorder, start_local as start


def test_headless_nan_stops_names_the_iteration_and_keeps_finite_weights(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=20, eval_interval=2))
    trainer.stepper.model = PoisonFrom(trainer.raw_model, at=5)
    rec = Recorder()
    trainer.bus.subscribe(rec)
    outcome = trainer.run()
    assert outcome.reason == "nan" and trainer.iter_num == 4
    errors = [n.message for n in rec.of(Notice) if n.level == "error"]
    assert any("loss is nan at iteration 5" in m and "run stopped" in m for m in errors)
    assert all(torch.isfinite(p).all() for p in trainer.raw_model.parameters())
    saved = load_checkpoint(trainer.run_dir / "last.pt")
    assert saved["iter_num"] == 4
    assert all(torch.isfinite(t).all() for t in saved["model"].values())


def test_a_nan_eval_never_makes_last_pt_unloadable_and_the_run_resumes_with_a_lower_lr(tiny_config,
                                                                                        monkeypatch) -> None:
    import math

    import tuigpt.engine.trainer as trainer_module

    real = trainer_module.estimate_loss
    monkeypatch.setattr(trainer_module, "estimate_loss", lambda *a, **k: {
        "train": math.nan, "val": math.inf, "train_bpb": None, "val_bpb": None, "batches": 2.0, "planned": 2.0}
        if k["iter_num"] == 4 else real(*a, **k))  # the weights are finite, the eval diverged
    trainer = Trainer(tiny_config(max_iters=4, eval_interval=2))
    trainer.run()
    saved = load_checkpoint(trainer.run_dir / "last.pt")
    assert saved["iter_num"] == 4 and saved["last_val_loss"] is None and saved["best_val_loss"] is not None
    # a file written before this fix holds the NaN itself: it loads as well, the eval loss read as none
    saved["last_val_loss"] = math.nan
    tuigpt.engine.checkpoint.save_checkpoint(saved, trainer.run_dir / "last.pt")
    resumed = Trainer(tiny_config(max_iters=6, eval_interval=2, learning_rate=1e-4), resume=True)
    assert resumed.iter_num == 4 and resumed.last_val_loss is None
    assert resumed.run().reason == "done" and resumed.iter_num == 6


def test_monitor_nan_pauses_and_resume_continues(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=8, eval_interval=100), pause_on_trouble=True)
    trainer.stepper.model = PoisonFrom(trainer.raw_model, at=3)
    run, rec = start(trainer)
    rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state == RunState.PAUSED)
    assert trainer.iter_num == 2
    trainer.send(Resume())
    assert run.wait(60)
    assert run.outcome.reason == "done" and trainer.iter_num == 8


def test_loss_spike_is_a_warning(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=30, eval_interval=100))

    class SpikeAt(PoisonFrom):
        def __call__(self, x, y):
            logits, loss = self.model(x, y)
            if self.model.training:
                self.calls += 1
                if self.calls == 25:
                    loss = loss * 10
            return logits, loss

    trainer.stepper.model = SpikeAt(trainer.raw_model, at=25)
    rec = Recorder()
    trainer.bus.subscribe(rec)
    assert trainer.run().reason == "done"
    spikes = [n.message for n in rec.of(Notice) if n.level == "warning" and "spike" in n.message]
    assert len(spikes) == 1 and "loss spike at iteration 25" in spikes[0]


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_headless_full_disk_stops_cleanly_and_keeps_the_previous_checkpoint(tiny_config, monkeypatch) -> None:
    trainer = Trainer(tiny_config(max_iters=20, eval_interval=4))
    rec = Recorder()
    trainer.bus.subscribe(rec)
    trainer.bus.subscribe(lambda e: monkeypatch.setattr(tuigpt.engine.checkpoint.torch, "save", _disk_full)
                          if getattr(e, "iter", 0) == 6 else None)
    outcome = trainer.run()
    assert outcome.reason == "disk"
    assert any("No space left on device" in n.message and "previous checkpoint is untouched" in n.message
               for n in rec.of(Notice))
    monkeypatch.undo()
    assert load_checkpoint(trainer.run_dir / "last.pt")["iter_num"] == 4
    assert sorted(p.name for p in trainer.run_dir.path.iterdir()) == ["best.pt", "last.pt"]  # no temp files


def test_monitor_full_disk_pauses_for_the_user(tiny_config, monkeypatch) -> None:
    trainer = Trainer(tiny_config(max_iters=10, eval_interval=100), pause_on_trouble=True)
    monkeypatch.setattr(tuigpt.engine.checkpoint.torch, "save", _disk_full)
    run, rec = start(trainer, CheckpointNow())
    rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state == RunState.PAUSED)
    trainer.send(Stop(save=False))
    assert run.wait(60)
    assert run.outcome.reason == "stopped"


def test_estimate_and_refusal_of_a_model_that_cannot_fit(tiny_config) -> None:
    gpt2 = estimate_training_memory(ModelArgs(50304, 1024, 12, 12, 768), batch_size=12, autocast=True)
    assert 1.9e9 < gpt2.state_bytes < 2.1e9  # 124M params x 16 bytes
    with pytest.raises(UserError, match=r"needs at least .* GiB to train .* GiB of RAM is free"):
        Trainer(tiny_config(n_layer=48, n_embd=4096, n_head=32, block_size=512, batch_size=64))
