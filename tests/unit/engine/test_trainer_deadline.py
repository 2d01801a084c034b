"""The trainer with a time budget on a tiny real model: it trains to its plan, keeps stable.pt where the cooldown
begins, ends with its final eval at its last iteration, and a resume with a new end goes on from stable.pt."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from support import Recorder

from tuigpt.engine.trainer import Trainer
from tuigpt.run.commands import Stop
from tuigpt.run.events import CheckpointWritten, EvalResult, IterationStats, Notice, PlanUpdated, RunFinished
from tuigpt.run.metrics_log import MetricsWriter, read_metrics
from tuigpt.run.rundir import METRICS_FILE


@pytest.fixture(autouse=True)
def _started_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget counts from the process's start; here from the end of the trainer's set-up (the test process
    started long ago, and a loaded machine's set-up would eat a short budget)."""
    monkeypatch.setattr("tuigpt.engine.planner.process_started", lambda: (time.time(), time.monotonic()))


def _run(cfg, resume: bool = False, stop_after: int | None = None) -> tuple[Trainer, Recorder, float]:
    trainer = Trainer(cfg, resume=resume)
    started = time.time()
    rec = Recorder()
    trainer.bus.subscribe(rec)
    writer = MetricsWriter(trainer.run_dir / METRICS_FILE, cfg.log_interval, resume_at=trainer.iter_num if resume
                           else None)
    trainer.bus.subscribe(writer)
    if stop_after is not None:
        trainer.bus.subscribe(lambda e: trainer.send(Stop(save=True)) if isinstance(e, IterationStats)
                              and e.iter >= stop_after else None)
    trainer.run()
    writer.close()
    return trainer, rec, time.time() - started


PLANNED = dict(max_iters=None, eval_interval=40, log_interval=5, warmup_iters=5, learning_rate=1e-3, min_lr=1e-4)


def test_a_budget_trains_to_its_plan_cools_down_and_ends_with_its_final_eval(tiny_config) -> None:
    trainer, rec, seconds = _run(tiny_config(time_budget="5s", **PLANNED))
    finished = rec.of(RunFinished)[0]
    assert finished.reason == "done" and abs(seconds - 4.0) < 3.0  # 5 s, less the 1 s kept for the exit (e2e and benchmarks time it closely)
    last = finished.iter
    assert rec.of(EvalResult)[-1].iter == last
    plans = rec.of(PlanUpdated)
    begun = [p for p in plans if p.reason == "cooldown"]
    assert begun and begun[0].cooldown_iter == begun[0].iter < last
    stable = [c for c in rec.of(CheckpointWritten) if c.path.endswith("stable.pt")]
    assert len(stable) == 1 and stable[0].iter == begun[0].cooldown_iter
    lrs = {e.iter: e.lr for e in rec.of(IterationStats)}
    start = begun[0].iter
    assert lrs[start] == pytest.approx(1e-3)
    # the schedule is complete: the last step runs at min_lr, or within a few steps of it when the plan shrank after
    # that step was launched (a slow step near the end)
    assert 1e-4 <= lrs[last] <= 1e-4 + 0.15 * 9e-4
    falling = [lrs[i] for i in range(begun[0].iter, last + 1)]
    assert all(b <= a + 1e-12 for a, b in zip(falling, falling[1:]))  # down to min_lr, never up
    state = torch.load(trainer.run_dir / "last.pt", weights_only=True)["plan"]
    assert state["finished"] and state["stable_iter"] == begun[0].cooldown_iter
    assert any(isinstance(e, Notice) and e.topic == "plan" for e in rec.events)  # the cooldown alerts


def test_a_resume_with_a_new_time_goes_on_from_stable_pt_and_keeps_the_cooled_model(tiny_config) -> None:
    first, rec1, _ = _run(tiny_config(time_budget="4s", **PLANNED))
    end1 = rec1.of(RunFinished)[0]
    stable_iter = rec1.of(PlanUpdated)[-1].cooldown_iter
    run_dir = first.run_dir
    resumed, rec2, seconds = _run(tiny_config(time_budget="3s", **PLANNED), resume=True)
    assert any("continuing from stable.pt" in str(n) for n in resumed.pending_notices)
    assert (run_dir / f"final-{end1.iter}.pt").is_file()  # the cooled model of the first plan, kept
    kept = read_metrics(run_dir / f"metrics.final-{end1.iter}.jsonl")
    assert kept and all(r["iter"] > stable_iter for r in kept if r["type"] == "iter")
    records = read_metrics(run_dir / METRICS_FILE)
    iters = [r["iter"] for r in records if r["type"] == "iter"]
    assert iters == sorted(iters) and len(set(iters)) == len(iters)  # one history: to stable.pt, then the new plan
    assert rec2.of(IterationStats)[0].iter == stable_iter + 1
    assert rec2.of(RunFinished)[0].reason == "done" and abs(seconds - 2.0) < 3.0
    # best.pt stayed the better, cooled model unless the new plan beat it
    assert resumed.best_val_loss <= end1.best_val_loss


def test_an_interrupted_plan_resumes_with_what_was_left_of_its_budget(tiny_config) -> None:
    first, rec1, used = _run(tiny_config(time_budget="8s", **PLANNED), stop_after=20)
    assert rec1.of(RunFinished)[0].reason == "stopped"
    state = json.loads(json.dumps(torch.load(first.run_dir / "last.pt", weights_only=True)["plan"]))
    assert not state["finished"] and 0 < state["used"] <= used + 0.5
    resumed = Trainer(tiny_config(time_budget="8s", **PLANNED), resume=True)
    try:
        assert resumed.planner is not None
        assert resumed.planner.end.budget == pytest.approx(8.0 - state["used"], abs=0.01)
        # a second interruption counts both sessions' time against the one budget
        assert resumed.planner.used_seconds() == pytest.approx(state["used"], abs=0.5)
    finally:
        resumed.close()


def test_a_budget_spent_by_the_set_up_is_refused_and_leaves_no_run(tiny_config, monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setattr("tuigpt.engine.planner.process_started", lambda: (time.time() - 30, time.monotonic() - 30))
    from tuigpt.run.errors import UserError

    cfg = tiny_config(time_budget="20s", **PLANNED)
    with pytest.raises(UserError, match=r"--time 20s leaves 0s to train after a set-up of 30s here: give at least 2m"):
        Trainer(cfg)
    assert not (Path(cfg.out_dir) / cfg.run_name).exists()


def test_a_plans_last_model_is_written_even_when_only_improvements_are_kept(tiny_config) -> None:
    trainer, rec, _ = _run(tiny_config(time_budget="3s", always_save_checkpoint=False, **PLANNED))
    last = rec.of(RunFinished)[0].iter
    written = [c for c in rec.of(CheckpointWritten) if c.path.endswith("last.pt")]
    assert written and written[-1].iter == last


def test_an_eval_whose_writes_eat_the_time_left_ends_the_run_with_its_model_in_last_pt(tiny_config) -> None:
    """The plan moves its end onto an eval's iteration only after that eval wrote (a slow disk, a slow sink): the
    run ends there, and last.pt holds that model with its plan finished, so a resume plans anew from stable.pt."""
    trainer = Trainer(tiny_config(time_budget="4s", always_save_checkpoint=False, **PLANNED))
    rec = Recorder()
    trainer.bus.subscribe(rec)
    slowed: list[int] = []

    def slow_sink(event) -> None:  # the bus calls subscribers in line: the eval waits for this one
        if isinstance(event, EvalResult) and event.iter > 0 and not slowed:
            slowed.append(event.iter)
            time.sleep(max(0.0, trainer.planner.seconds_left() - 0.3))

    trainer.bus.subscribe(slow_sink)
    trainer.run()
    finished = rec.of(RunFinished)[0]
    assert finished.reason == "done" and finished.iter == slowed[0]
    state = torch.load(trainer.run_dir / "last.pt", weights_only=True)
    assert state["iter_num"] == slowed[0] and state["plan"]["finished"]


def test_a_cooldown_the_time_cut_short_says_so(tiny_config) -> None:
    """Steps that slow down near the end more than the plan can follow (130 to 2,250 ms a step under a second
    job) leave the learning rate high at the deadline: the run still ends, and says its model did not cool
    down, with what to do. Here the first step of the cooldown stalls past the deadline, which no plan can
    follow on any machine (a 0.4 s step, ~50x the plan's mean on a quiet one, was followed by the plan under
    CI's load: its steps were slower, so the cooldown fit)."""
    trainer = Trainer(tiny_config(time_budget="4s", **PLANNED))
    rec = Recorder()
    trainer.bus.subscribe(rec)
    slowed: list[int] = []

    def second_job(event) -> None:  # the bus calls subscribers in line: each step waits for this one
        if isinstance(event, PlanUpdated) and event.reason == "cooldown":
            slowed.append(event.iter)
        elif isinstance(event, IterationStats) and len(slowed) == 1:
            slowed.append(event.iter)
            assert trainer.planner is not None
            time.sleep(max(0.0, trainer.planner.deadline_wall() - time.time()) + 0.2)

    trainer.bus.subscribe(second_job)
    trainer.run()
    assert rec.of(RunFinished)[0].reason == "done"
    cut = [n for n in rec.of(Notice) if "the cooldown was cut short" in n.message]
    assert len(cut) == 1 and cut[0].level == "warning" and cut[0].topic == "plan"
    assert "stable.pt" in cut[0].message and "--resume --time" in cut[0].message


def test_a_cooldown_that_completes_says_nothing_of_being_cut(tiny_config) -> None:
    trainer, rec, _ = _run(tiny_config(time_budget="3s", **PLANNED))
    assert not [n for n in rec.of(Notice) if "cut short" in n.message]
