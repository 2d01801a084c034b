"""An eval's checkpoint written while training goes on (what a run on a GPU does; forced here on the CPU)."""

from __future__ import annotations

import errno
import threading

import pytest
import torch

import tuigpt.engine.checkpoint
from tuigpt.engine.checkpoint import load_checkpoint
from tuigpt.engine.trainer import Trainer
from tuigpt.run.commands import Pause, Resume
from tuigpt.run.events import (CheckpointWritten, EvalResult, IterationStats, Notice, RunFailed, RunFinished,
                               RunState, StateChanged)

from support import Recorder, start_local


def _background(trainer: Trainer) -> Trainer:
    assert trainer.checkpoint_writer.background is False  # on a CPU the write stays in the foreground
    trainer.checkpoint_writer.background = True
    return trainer


def test_the_write_overlaps_the_next_steps_and_holds_the_model_of_its_eval(tiny_config) -> None:
    trainer = _background(Trainer(tiny_config(max_iters=12, eval_interval=4)))
    at_eval: dict[int, dict[str, torch.Tensor]] = {}
    written: dict[int, dict[str, torch.Tensor]] = {}
    step_six = threading.Event()
    real_write = trainer.checkpoints.write

    def write(state, name="last.pt"):
        if state["iter_num"] == 4 and name == "last.pt":
            # this write cannot end before training has run steps 5 and 6: they run while it is in flight
            assert step_six.wait(60), "training waited for the write"
        written.setdefault(state["iter_num"], {k: v.clone() for k, v in state["model"].items()})
        return real_write(state, name)

    trainer.checkpoints.write = write

    def watch(event) -> None:
        if isinstance(event, EvalResult):
            at_eval[event.iter] = {k: v.detach().clone() for k, v in trainer.raw_model.state_dict().items()}
        if isinstance(event, IterationStats) and event.iter == 6:
            step_six.set()

    rec = Recorder()
    trainer.bus.subscribe(watch)
    trainer.bus.subscribe(rec)
    assert trainer.run().reason == "done"

    # the file of the eval at 4 holds the weights of iteration 4, though steps 5 and 6 changed them while it wrote
    assert all(torch.equal(written[4][k], at_eval[4][k]) for k in at_eval[4])
    assert not all(torch.equal(written[4][k], at_eval[8][k]) for k in at_eval[4])
    # reported once on disk, after the steps that ran meanwhile, and all of them before the run's end
    events = rec.events
    first = next(i for i, e in enumerate(events) if isinstance(e, CheckpointWritten) and e.iter == 4)
    assert any(isinstance(e, IterationStats) and e.iter == 5 for e in events[:first])
    finished = next(i for i, e in enumerate(events) if isinstance(e, RunFinished))
    checkpoints = [(e.iter, e.reason) for e in events if isinstance(e, CheckpointWritten)]
    assert all(i < finished for i, e in enumerate(events) if isinstance(e, CheckpointWritten))
    assert [it for it, _ in checkpoints] == sorted(it for it, _ in checkpoints) and (12, "eval") in checkpoints
    assert all(e.waited is not None for e in events if isinstance(e, CheckpointWritten))
    last = load_checkpoint(trainer.run_dir / "last.pt")
    assert last["iter_num"] == 12
    assert all(torch.equal(last["model"][k], trainer.raw_model.state_dict()[k].cpu()) for k in last["model"])
    best = [e.iter for e in events if isinstance(e, EvalResult) and e.is_best][-1]
    assert load_checkpoint(trainer.run_dir / "best.pt")["iter_num"] == best
    # the run's checkpoint time is what it waited, not the seconds the writes took meanwhile
    waited = sum(e.waited for e in events if isinstance(e, CheckpointWritten))
    assert trainer.checkpoint_seconds == pytest.approx(waited)


def _writes_wait_for(trainer: Trainer) -> threading.Event:
    """Make the trainer's checkpoint writes wait until the returned event is set (a write held in flight)."""
    release = threading.Event()
    real_write = trainer.checkpoints.write

    def write(state, name="last.pt"):
        assert release.wait(60)
        return real_write(state, name)

    trainer.checkpoints.write = write
    return release


def test_a_write_that_ends_while_the_run_is_paused_is_reported_before_it_resumes(tiny_config) -> None:
    trainer = _background(Trainer(tiny_config(max_iters=10, eval_interval=4)))
    release = _writes_wait_for(trainer)
    trainer.bus.subscribe(lambda e: trainer.send(Pause()) if isinstance(e, EvalResult) and e.iter == 4 else None)
    run, rec = start_local(trainer)
    rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state == RunState.PAUSED)
    release.set()  # the write ends while the run waits for the user
    rec.wait(CheckpointWritten, lambda e: e.iter == 4 and e.reason == "eval")
    assert trainer.state == RunState.PAUSED
    trainer.send(Resume())
    assert run.wait(60) and run.outcome.reason == "done"


def test_a_state_too_big_for_host_memory_is_written_in_the_foreground_and_said_once(tiny_config,
                                                                                    monkeypatch) -> None:
    import tuigpt.engine.trainer as trainer_module
    from tuigpt.engine.checkpoint_writer import state_bytes

    trainer = _background(Trainer(tiny_config(max_iters=12, eval_interval=4)))
    size = state_bytes(trainer.raw_model, trainer.optimizer)
    monkeypatch.setattr(trainer_module, "available_bytes", lambda device: size)  # twice the state is not free
    rec = Recorder()
    trainer.bus.subscribe(rec)
    assert trainer.run().reason == "done"
    written = rec.of(CheckpointWritten)
    assert written and all(e.waited is None for e in written)  # the whole write, in the foreground
    said = [n.message for n in rec.of(Notice) if "foreground" in n.message]
    assert len(said) == 1 and "more than half the host's" in said[0]
    assert load_checkpoint(trainer.run_dir / "last.pt")["iter_num"] == 12


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_background_write_to_a_full_disk_stops_the_run_and_keeps_the_previous_checkpoint(tiny_config,
                                                                                         monkeypatch) -> None:
    trainer = _background(Trainer(tiny_config(max_iters=20, eval_interval=4)))
    rec = Recorder()
    trainer.bus.subscribe(rec)
    trainer.bus.subscribe(lambda e: monkeypatch.setattr(tuigpt.engine.checkpoint.torch, "save", _disk_full)
                          if isinstance(e, CheckpointWritten) and e.iter == 4 and e.reason == "best" else None)
    outcome = trainer.run()
    assert outcome.reason == "disk" and outcome.iter < 20
    assert any("No space left on device" in n.message and "previous checkpoint is untouched" in n.message
               and "last.pt" in n.message for n in rec.of(Notice))
    monkeypatch.undo()
    assert load_checkpoint(trainer.run_dir / "last.pt")["iter_num"] == 4
    assert sorted(p.name for p in trainer.run_dir.path.iterdir()) == ["best.pt", "last.pt"]  # no temp files


def test_a_writer_that_fails_otherwise_fails_the_run_as_a_foreground_write_would(tiny_config, monkeypatch) -> None:
    trainer = _background(Trainer(tiny_config(max_iters=8, eval_interval=4)))

    def broken(*_args, **_kwargs):
        raise RuntimeError("serialisation broke")

    monkeypatch.setattr(tuigpt.engine.checkpoint.torch, "save", broken)
    rec = Recorder()
    trainer.bus.subscribe(rec)
    with pytest.raises(RuntimeError, match="serialisation broke"):
        trainer.run()
    assert "serialisation broke" in rec.of(RunFailed)[-1].message


def test_a_run_that_fails_after_a_background_write_names_that_file(tiny_config, monkeypatch) -> None:
    trainer = _background(Trainer(tiny_config(max_iters=12, eval_interval=4)))
    release = _writes_wait_for(trainer)
    step = trainer.train_step

    def fail_at_six():
        if trainer.iter_num == 6:
            release.set()  # the write of iteration 4 ends as the step fails
            raise RuntimeError("a step failed")
        return step()

    trainer.train_step = fail_at_six
    rec = Recorder()
    trainer.bus.subscribe(rec)
    with pytest.raises(RuntimeError, match="a step failed"):
        trainer.run()
    assert rec.of(RunFailed)[-1].last_checkpoint == str(trainer.run_dir / "last.pt")
    assert load_checkpoint(trainer.run_dir / "last.pt")["iter_num"] == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_evals_write_in_the_background_and_the_files_hold_the_model(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=12, eval_interval=4, device="cuda"))
    assert trainer.checkpoint_writer.background
    rec = Recorder()
    trainer.bus.subscribe(rec)
    assert trainer.run().reason == "done"
    assert all(e.waited is not None for e in rec.of(CheckpointWritten))
    last = load_checkpoint(trainer.run_dir / "last.pt")
    assert last["iter_num"] == 12
    assert all(torch.equal(last["model"][k], v.cpu()) for k, v in trainer.raw_model.state_dict().items())
