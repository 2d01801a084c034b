"""The trainer on a tiny real model: commands at iteration boundaries, events out, exact resume."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from tuigpt.engine.checkpoint import load_checkpoint
from tuigpt.run.errors import UserError
from tuigpt.run.commands import CheckpointNow, Pause, Sample, SetEvalInterval, Stop, TogglePause
from tuigpt.run.events import CheckpointWritten, EvalIntervalChanged, EvalResult, IterationStats, RunFinished, RunStarted, RunState, SampleGenerated, StateChanged
from tuigpt.run.rundir import METRICS_FILE
from tuigpt.run.metrics_log import MetricsWriter
from tuigpt.engine.trainer import Trainer

from support import start_local as start


def test_trains_evaluates_checkpoints_and_finishes(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=10, eval_interval=5))
    run, rec = start(trainer)
    assert run.wait(60)
    assert run.error is None and run.outcome.reason == "done"
    started = rec.of(RunStarted)[0]
    assert started.max_iters == 10 and started.tokens_per_iter == 4 * 32
    assert [e.iter for e in rec.of(IterationStats)] == list(range(1, 11))
    assert [e.iter for e in rec.of(EvalResult)] == [0, 5, 10]
    stats = rec.of(IterationStats)[-1]
    assert stats.ms_per_iter > 0 and stats.tokens_per_sec > 0 and stats.tokens_seen == 10 * 128
    finished = rec.of(RunFinished)[0]
    assert finished.reason == "done" and finished.iter == 10
    assert finished.train_seconds > 0 and finished.eval_seconds > 0
    last = load_checkpoint(trainer.run_dir / "last.pt")
    assert last["iter_num"] == 10
    assert (trainer.run_dir / "best.pt").exists()


def test_a_wsd_run_trains_at_the_peak_then_cools_down_and_says_where(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=12, warmup_iters=2, learning_rate=1e-3, min_lr=0.0, schedule="wsd",
                                  cooldown_frac=0.5, eval_interval=12))
    run, rec = start(trainer)
    assert run.wait(60) and run.error is None
    assert rec.of(RunStarted)[0].cooldown_from == 6
    lrs = [e.lr for e in rec.of(IterationStats)]
    assert lrs[:2] == pytest.approx([1e-3 / 3, 2e-3 / 3])  # warmup
    assert lrs[2:7] == [1e-3] * 5  # the peak through iteration 7 (step index 6, the cooldown's first: ratio 0)
    assert lrs[7:] == pytest.approx([1e-3 * (6 - k) / 6 for k in range(1, 6)])  # straight down towards 0


def test_pause_holds_the_loop_and_resume_continues(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=6, eval_interval=100))
    run, rec = start(trainer, Pause())
    rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state == RunState.PAUSED)
    time.sleep(0.5)
    assert rec.of(IterationStats) == []  # nothing trained while paused
    assert trainer.raw_model.training  # the initial eval put the model back in train mode
    trainer.send(CheckpointNow())  # commands still work while paused
    written = rec.wait_for(lambda e: isinstance(e, CheckpointWritten))
    assert written.iter == 0 and Path(written.path).name == "last.pt"
    trainer.send(TogglePause())
    assert run.wait(60)
    assert [e.iter for e in rec.of(IterationStats)] == list(range(1, 7))


def test_sample_command_publishes_text(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=3, eval_interval=100))
    run, rec = start(trainer, Sample(prompt="ROMEO:", max_new_tokens=30))
    assert run.wait(60)
    sample = rec.of(SampleGenerated)[0]
    assert sample.iter == 0 and sample.prompt == "ROMEO:"
    assert len(sample.text) == 30
    assert trainer.raw_model.training


def test_eval_interval_command_changes_when_evals_happen(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=9, eval_interval=100))
    run, rec = start(trainer, SetEvalInterval(3))
    assert run.wait(60)
    changed = rec.of(EvalIntervalChanged)[0]
    assert changed.eval_interval == 3 and changed.next_eval_iter == 3
    assert [e.iter for e in rec.of(EvalResult)] == [0, 3, 6, 9]


def test_stop_saves_last_checkpoint_and_reports_stopped(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=1000, eval_interval=1000))
    run, rec = start(trainer)
    rec.wait_for(lambda e: isinstance(e, IterationStats) and e.iter >= 3)
    trainer.send(Stop(save=True))
    assert run.wait(60)
    finished = rec.of(RunFinished)[0]
    assert finished.reason == "stopped" and finished.iter < 1000
    assert load_checkpoint(trainer.run_dir / "last.pt")["iter_num"] == finished.iter


def test_stop_without_save_writes_nothing(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=1000, eval_interval=1000))
    run, rec = start(trainer, Stop(save=False))
    assert run.wait(60)
    assert rec.of(RunFinished)[0].reason == "stopped"
    assert not (trainer.run_dir / "last.pt").exists()


def _iteration_losses(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["type"] == "iter":
            out[("iter", r["iter"])] = r["loss"]
        elif r["type"] == "eval":
            out[("eval", r["iter"])] = (r["train_loss"], r["val_loss"])
    return out


def _train(cfg, resume: bool = False) -> Trainer:
    trainer = Trainer(cfg, resume=resume)
    writer = MetricsWriter(trainer.run_dir / METRICS_FILE, cfg.log_interval)
    trainer.bus.subscribe(writer)
    trainer.run()
    writer.close()
    return trainer


@pytest.mark.parametrize("recipe", [{}, {"optimizer": "muon", "schedule": "wsd", "cooldown_frac": 0.5,
                                        "muon_weight_decay": 0.01}], ids=["adamw-cosine", "muon-wsd"])
def test_resume_gives_the_same_losses_as_a_straight_run(tiny_config, recipe: dict) -> None:
    """N iterations then --resume to 2N equals 2N straight, bit for bit, evals included (dropout on)."""
    cfg = dict(dropout=0.1, eval_interval=3, lr_decay_iters=12, **recipe)  # same schedule in both
    straight = _train(tiny_config(run_name="straight", max_iters=12, **cfg))
    _train(tiny_config(run_name="split", max_iters=6, **cfg))
    resumed = _train(tiny_config(run_name="split", max_iters=12, **cfg), resume=True)
    a = _iteration_losses(straight.run_dir / METRICS_FILE)
    b = _iteration_losses(resumed.run_dir / METRICS_FILE)
    assert a.keys() == b.keys() and len(a) == 12 + 5  # 12 iterations, evals at 0, 3, 6, 9, 12
    assert a == b
    for p1, p2 in zip(straight.raw_model.parameters(), resumed.raw_model.parameters()):
        assert torch.equal(p1, p2)
    for s1, s2 in zip(straight.optimizer.state.values(), resumed.optimizer.state.values()):
        assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


def test_resume_refuses_a_different_model_shape(tiny_config) -> None:
    _train(tiny_config(max_iters=2))
    with pytest.raises(UserError, match=r"cannot resume .*n_embd was 32 in the checkpoint but is 64"):
        Trainer(tiny_config(max_iters=4, n_embd=64), resume=True)


def test_resume_refuses_another_optimizer(tiny_config) -> None:
    _train(tiny_config(max_iters=2))
    with pytest.raises(UserError, match=r"cannot resume .*optimizer was 'adamw' in the checkpoint but is 'muon'"):
        Trainer(tiny_config(max_iters=4, optimizer="muon"), resume=True)


def test_a_checkpoint_written_before_the_schedule_and_optimizer_keys_resumes_exactly(tiny_config) -> None:
    """A last.pt whose config has no schedule, cooldown or optimizer keys (every checkpoint before them) means AdamW
    and cosine, and continues bit for bit as the run would have."""
    from tuigpt.engine.checkpoint import save_checkpoint

    cfg = dict(dropout=0.1, eval_interval=3, lr_decay_iters=12)
    straight = _train(tiny_config(run_name="straight", max_iters=12, **cfg))
    split = _train(tiny_config(run_name="old", max_iters=6, **cfg))
    last = split.run_dir / "last.pt"
    state = load_checkpoint(last)
    new_keys = ("schedule", "cooldown_frac", "cooldown_shape", "optimizer", "muon_lr", "muon_momentum",
                "muon_weight_decay")
    state["config"] = {k: v for k, v in state["config"].items() if k not in new_keys}
    save_checkpoint(state, last)
    resumed = _train(tiny_config(run_name="old", max_iters=12, **cfg), resume=True)
    assert _iteration_losses(straight.run_dir / METRICS_FILE) == _iteration_losses(resumed.run_dir / METRICS_FILE)
    assert all(torch.equal(a, b) for a, b in zip(straight.raw_model.parameters(), resumed.raw_model.parameters()))


def test_resume_reports_applied_and_kept_changes(tiny_config) -> None:
    _train(tiny_config(max_iters=4, eval_interval=2, beta2=0.95))
    trainer = Trainer(tiny_config(max_iters=6, eval_interval=3, beta2=0.99, seed=7), resume=True)
    assert any("max_iters changed from 4 to 6" in n for n in trainer.pending_notices)
    assert any("eval_interval changed from 2 to 3" in n for n in trainer.pending_notices)
    assert any("beta2 changed from 0.95 to 0.99" in n for n in trainer.pending_notices)
    assert trainer.optimizer.param_groups[0]["betas"] == (0.9, 0.99)  # applied, as reported
    assert any("seed=7 ignored, 1337 kept" in n for n in trainer.pending_notices)
    assert trainer.config.seed == 1337  # kept, as reported
    assert trainer.iter_num == 4


def test_new_run_refuses_to_overwrite_an_existing_one(tiny_config) -> None:
    _train(tiny_config(max_iters=2))
    with pytest.raises(UserError, match="already holds a run.*--resume"):
        Trainer(tiny_config(max_iters=2))


def test_resume_without_a_checkpoint(tiny_config) -> None:
    with pytest.raises(UserError, match="nothing to resume"):
        Trainer(tiny_config(), resume=True)


def test_block_size_longer_than_the_data_is_refused_before_training(tiny_config, tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("to be or not to be, that is the question\n" * 3)
    with pytest.raises(UserError, match="block_size=64 is too large"):
        Trainer(tiny_config(data_path=str(short), block_size=64))


def test_a_resumed_runs_times_are_the_runs_over_its_sessions(tiny_config) -> None:
    """Issue 27: "done at iter 600 in 30s (train 53s, eval 2s)" mixed this session's wall time with the run's
    training time. The checkpoint keeps the run's wall, eval and checkpoint times; the resumed session starts from
    them (RunStarted.elapsed_before) and its closing line counts them all, this session's said apart."""
    first = _train(tiny_config(run_name="times", max_iters=4, eval_interval=2))
    first_end = [r for r in _records(first.run_dir / METRICS_FILE) if r["type"] == "finish"][-1]
    resumed = _train(tiny_config(run_name="times", max_iters=8, eval_interval=2), resume=True)
    records = _records(resumed.run_dir / METRICS_FILE)
    start, end = [r for r in records if r["type"] == "start"][-1], [r for r in records if r["type"] == "finish"][-1]
    assert 0 < start["elapsed_before"] <= first_end["wall_seconds"]  # up to the checkpoint it resumed from
    assert end["wall_seconds"] == pytest.approx(start["elapsed_before"] + end["session_seconds"])
    assert end["eval_seconds"] > first_end["eval_seconds"] and end["train_seconds"] > first_end["train_seconds"]
    assert end["wall_seconds"] >= end["train_seconds"] + end["eval_seconds"]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-links"])
def test_best_pt_is_the_model_of_the_best_eval_written_once(tiny_config, monkeypatch, links: bool) -> None:
    """At an eval that improves val loss, last.pt is written and best.pt becomes the same file (a hard link, no
    second write of the same bytes); a later last.pt replaces its own file only, so best.pt keeps the best model.
    Where the file system makes no links, best.pt is written in full as before."""
    import os

    import tuigpt.engine.trainer as trainer_module

    vals = iter([3.0, 2.0, 2.5])  # the evals at iterations 0, 5 and 10: the one at 5 is the best

    def losses(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        v = next(vals)
        return {"train": v, "val": v, "train_bpb": None, "val_bpb": None, "batches": 2.0, "planned": 2.0}

    monkeypatch.setattr(trainer_module, "estimate_loss", losses)
    if not links:
        def no_link(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise PermissionError(1, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
    trainer = Trainer(tiny_config(max_iters=10, eval_interval=5, always_save_checkpoint=True))
    same_file: list[bool] = []

    def at_best(event) -> None:  # noqa: ANN001
        if isinstance(event, CheckpointWritten) and event.reason == "best":
            same_file.append(os.path.samefile(trainer.run_dir / "best.pt", trainer.run_dir / "last.pt"))

    trainer.bus.subscribe(at_best)
    run, rec = start(trainer)
    assert run.wait(60) and run.error is None
    assert same_file == [links]  # one best eval; linked where links work
    assert load_checkpoint(trainer.run_dir / "best.pt")["iter_num"] == 5
    assert load_checkpoint(trainer.run_dir / "last.pt")["iter_num"] == 10
    assert not os.path.samefile(trainer.run_dir / "best.pt", trainer.run_dir / "last.pt")
    assert not [p for p in (trainer.run_dir / "last.pt").parent.iterdir() if p.name.endswith(".tmp")]
