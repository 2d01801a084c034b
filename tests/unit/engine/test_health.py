"""Training health: the numbers in metrics.jsonl, NaN forensics and on_nan, stalls, divergence, the sample timeline."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from tuigpt.engine.health import DIVERGE_WINDOW, LossWatch, StallWatch
from tuigpt.engine.trainer import Trainer
from tuigpt.run.errors import UserError
from tuigpt.run.events import (Diverging, IterationStats, NanDetected, Notice, Rewound, RunState, Stalled,
                               StateChanged)
from tuigpt.run.metrics_log import MetricsWriter, read_metrics

from support import PoisonFrom, Recorder, start_local


def _run_with_metrics(trainer: Trainer) -> tuple[Recorder, list[dict]]:
    rec = Recorder()
    trainer.bus.subscribe(rec)
    writer = MetricsWriter(trainer.run_dir.metrics, trainer.config.log_interval)
    trainer.bus.subscribe(writer)
    try:
        trainer.run()
    finally:
        writer.close()
    return rec, read_metrics(trainer.run_dir.metrics)


def test_every_logged_iteration_in_metrics_jsonl_carries_the_health_fields(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=12, log_interval=4, grad_clip=0.5))
    _, records = _run_with_metrics(trainer)
    iters = [r for r in records if r["type"] == "iter"]
    assert [r["iter"] for r in iters] == [4, 8, 12]
    for r in iters:
        assert [layer["name"] for layer in r["layers"]] == ["embed", "block 0", "block 1", "head"]
        # the groups partition the parameters: their squared gradient norms add up to the global one
        assert math.sqrt(sum(layer["grad"] ** 2 for layer in r["layers"])) == pytest.approx(r["grad_norm"], rel=1e-4)
        assert r["clipped"] == (r["grad_norm"] > 0.5)
        assert 0.0 <= r["clip_rate"] <= 1.0
        assert 0 < r["update_ratio"] < 1 and all(layer["weight"] > 0 and layer["update"] > 0 for layer in r["layers"])
        assert r["lr"] > 0


def test_grad_norm_is_the_norm_before_clipping(tiny_config) -> None:
    """The reported norm is what clip_grad_norm_ would see, not the clipped one (which is at most grad_clip)."""
    trainer = Trainer(tiny_config(max_iters=3, grad_clip=1e-3))
    rec, _ = _run_with_metrics(trainer)
    stats = rec.of(IterationStats)
    assert all(s.grad_norm > 1e-3 and s.clipped for s in stats)
    assert stats[-1].clip_rate == 1.0


@pytest.mark.parametrize("fused", [True, False], ids=["fused kernel skips it", "foreach is not stepped"])
def test_a_non_finite_step_changes_neither_the_weights_nor_the_optimizer_state(tiny_config, fused: bool) -> None:
    """A fused AdamW is told on the device to skip (no sync before it); the others are not stepped at all."""
    trainer = Trainer(tiny_config(max_iters=5, warmup_iters=0))
    stepper = trainer.stepper
    for group in stepper.optimizer.param_groups:
        group["fused"] = fused
    assert stepper._skips_on_device is fused
    stepper.step(1e-3)  # one good step, so the moments are not zero
    weights = [p.detach().clone() for p in trainer.raw_model.parameters()]
    moments = {k: v.clone() for k, v in stepper.optimizer.state[next(trainer.raw_model.parameters())].items()}
    stepper.model = PoisonFrom(trainer.raw_model, at=1)
    bad = stepper.step(1e-3)
    assert not bad.applied and bad.bad == "loss" and not math.isfinite(bad.loss)
    assert all(torch.equal(a, p) for a, p in zip(weights, trainer.raw_model.parameters()))
    state = stepper.optimizer.state[next(trainer.raw_model.parameters())]
    assert all(torch.equal(moments[k], state[k]) for k in moments)  # step count and both moments
    good = stepper.step(1e-3)
    assert good.applied and math.isfinite(good.loss)
    assert not all(torch.equal(a, p) for a, p in zip(weights, trainer.raw_model.parameters()))


def test_a_nan_is_reported_with_its_forensics_and_rewind_recovers(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=20, min_lr=0.0, warmup_iters=2, eval_interval=10,
                                  on_nan="rewind", nan_lr_factor=1e-5))
    trainer.stepper.model = PoisonFrom(trainer.raw_model, at=5)
    lr = trainer.config.learning_rate
    rec, records = _run_with_metrics(trainer)
    assert trainer.iter_num == 20 and rec.of(Stalled) == []
    nan = rec.of(NanDetected)[0]
    assert nan.iter == 5 and nan.cause == "loss" and nan.action == "rewind" and 0 < nan.lr <= lr
    assert [r["iter"] for r in nan.recent] == list(range(1, nan.iter))  # the good steps before it
    assert [g["name"] for g in nan.layers] == ["embed", "block 0", "block 1", "head"]
    assert len(nan.batch_starts) == 1 and len(nan.batch_starts[0]) == trainer.config.batch_size
    rewound = rec.of(Rewound)[0]
    assert rewound.iter == 0 and rewound.checkpoint is not None and rewound.skipped == [nan.iter]
    assert rewound.lr_scale == pytest.approx(1e-5) and rewound.rewinds == 1
    after = [s for s in rec.of(IterationStats) if s.time > rewound.time]
    assert after and max(s.lr for s in after) <= lr * 1e-5 * 1.0001
    assert all(torch.isfinite(p).all() for p in trainer.raw_model.parameters())
    kinds = [r["type"] for r in records]
    assert "nan" in kinds and "rewind" in kinds and kinds.index("nan") < kinds.index("rewind")
    assert any("rewinding to the last checkpoint (1 of 3)" in n.message for n in rec.of(Notice))


def test_rewind_gives_up_after_nan_max_rewinds_and_stops_headless(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=20, warmup_iters=2, on_nan="rewind", nan_max_rewinds=1,
                                  nan_lr_factor=1.0))
    trainer.stepper.model = PoisonFrom(trainer.raw_model, at=5, times=1_000)  # NaN whatever the rewind does
    rec = Recorder()
    trainer.bus.subscribe(rec)
    assert trainer.run().reason == "nan"
    assert [n.action for n in rec.of(NanDetected)] == ["rewind", "stop"]
    assert len(rec.of(Rewound)) == 1
    assert any("1 rewind(s) did not help" in n.message and "run stopped" in n.message for n in rec.of(Notice))


def test_rewind_is_refused_with_several_ranks(tiny_config) -> None:
    from tuigpt.engine.nan_guard import NanGuard

    with pytest.raises(UserError, match="one process only"):
        NanGuard(tiny_config(on_nan="rewind"), pause_on_trouble=False, world_size=2)


class SleepAt:
    """A test hook: training call number ``at`` blocks until released (a hung collective or data path)."""

    def __init__(self, model, at: int) -> None:
        self.model, self.at, self.calls = model, at, 0
        self.release = threading.Event()

    def __call__(self, x, y):
        if self.model.training:
            self.calls += 1
            if self.calls == self.at:
                self.release.wait(120)
        return self.model(x, y)


def test_a_stalled_step_raises_a_stall_event_within_the_window(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=40, eval_interval=1000, stall_min_seconds=0.5))
    hook = SleepAt(trainer.raw_model, at=25)
    trainer.stepper.model = hook
    run, rec = start_local(trainer)
    stall = rec.wait_for(lambda e: isinstance(e, Stalled), timeout=60)
    hook.release.set()
    assert stall.iter == 24 and stall.threshold_s >= 0.5
    assert stall.threshold_s < stall.seconds < stall.threshold_s + 2.0  # the watchdog looks every threshold / 10
    assert run.wait(60) and run.outcome.reason == "done"
    assert len(rec.of(Stalled)) == 1
    assert any("iterations go on: iteration 25" in n.message for n in rec.of(Notice))


def test_no_stall_while_paused_evaluating_or_before_steps_are_timed() -> None:
    now = [0.0]
    published: list = []
    watch = StallWatch(published.append, factor=10, min_seconds=1.0, clock=lambda: now[0])
    watch(StateChanged(state=RunState.RUNNING, iter=0))
    now[0] = 100.0
    assert watch.check() is None  # no step timed yet: no median to measure against
    for i in range(1, 12):
        now[0] += 0.2
        watch(IterationStats(iter=i, loss=1.0, lr=1e-3, ms_per_iter=200.0, tokens_per_sec=1.0, mfu=None,
                             tokens_seen=i, train_seconds=0.0))
    assert watch.threshold() == pytest.approx(2.0)  # 10 x 200 ms
    watch(StateChanged(state=RunState.EVALUATING, iter=11))
    now[0] += 50
    assert watch.check() is None
    watch(StateChanged(state=RunState.RUNNING, iter=11))  # the clock restarts when training does
    now[0] += 1.9
    assert watch.check() is None
    now[0] += 0.2
    stall = watch.check()
    assert stall is not None and stall.iter == 11 and stall.seconds == pytest.approx(2.1)
    now[0] += 10
    assert watch.check() is None and published == [stall]  # one event per stall


def test_a_loss_trending_up_is_reported_once_and_again_only_after_it_came_down() -> None:
    watch = LossWatch()
    events = []
    losses = [2.0] * DIVERGE_WINDOW + [2.0 + 0.01 * k for k in range(DIVERGE_WINDOW)]  # +100% over a window
    losses += [1.5] * DIVERGE_WINDOW + [1.5 + 0.01 * k for k in range(DIVERGE_WINDOW)]
    for i, loss in enumerate(losses, start=1):
        events += [e for e in watch.check(i, loss) if isinstance(e, Diverging)]
    assert len(events) == 2
    first = events[0]
    assert DIVERGE_WINDOW < first.iter < 2 * DIVERGE_WINDOW and first.loss_now > first.loss_before * 1.1
    noisy_but_falling = LossWatch()
    falling = [3.0 - 1e-3 * i + (0.3 if i % 2 else -0.3) for i in range(1, 1000)]
    assert not any(isinstance(e, Diverging) for i, x in enumerate(falling, 1) for e in noisy_but_falling.check(i, x))


def test_sample_every_eval_keeps_a_timeline_from_one_prompt_and_seed(tiny_config) -> None:
    trainer = Trainer(tiny_config(max_iters=10, eval_interval=5, sample_every_eval=True, sample_max_new_tokens=8))
    _, records = _run_with_metrics(trainer)
    samples = [r for r in records if r["type"] == "sample"]
    assert [s["iter"] for s in samples] == [0, 5, 10] and all(s["timeline"] for s in samples)
    assert len({s["prompt"] for s in samples}) == 1


def _flat_val_loss(monkeypatch: pytest.MonkeyPatch, vals: list[float]) -> None:
    """The trainer's evals report these val losses in turn (then the last forever): a run that stops improving."""
    from tuigpt.engine import trainer

    left = iter(vals)
    last = [vals[-1]]

    def estimate_loss(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        last[0] = next(left, last[0])
        return {"train": last[0], "val": last[0], "train_bpb": None, "val_bpb": None, "batches": 1.0, "planned": 1.0}

    monkeypatch.setattr(trainer, "estimate_loss", estimate_loss)


def test_a_plateau_alerts_once_and_the_run_goes_on(tiny_config, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuigpt.run.alerts import alert_for

    _flat_val_loss(monkeypatch, [4.0, 3.0, 3.1, 3.2, 3.05, 3.0])
    trainer = Trainer(tiny_config(max_iters=40, eval_interval=5, plateau_evals=3))
    recorder, _ = _run_with_metrics(trainer)
    plateaus = recorder.of(Notice, lambda n: n.topic == "plateau")
    assert len(plateaus) == 1 and plateaus[0].level == "warning"  # at iter 20; said once, not at every eval after
    assert plateaus[0].message == ("plateau: val loss has not improved in 3 evals (best 3.0000 at iter 5; now "
                                   "3.0500)")
    alert = alert_for(plateaus[0], "tiny")
    assert alert is not None and alert.kind == "plateau"
    assert trainer.iter_num == 40  # no plateau_stop: it only tells


def test_plateau_stop_ends_the_run_with_a_checkpoint(tiny_config, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuigpt.engine.checkpoint import load_checkpoint
    from tuigpt.run.events import RunFinished

    _flat_val_loss(monkeypatch, [4.0, 3.0, 3.1, 3.2, 3.05])
    trainer = Trainer(tiny_config(max_iters=1000, eval_interval=5, plateau_evals=3, plateau_stop=True))
    recorder, records = _run_with_metrics(trainer)
    ending = recorder.of(RunFinished)[0]
    assert ending.reason == "stopped" and ending.iter == 20  # the third eval without a better loss
    assert "plateau_stop, so the run stops here and saves last.pt" in recorder.of(
        Notice, lambda n: n.topic == "plateau")[0].message
    assert load_checkpoint(trainer.run_dir.last)["iter_num"] == 20
    assert any(r["type"] == "notice" and r.get("topic") == "plateau" for r in records)


def test_plateau_stop_needs_plateau_evals(tiny_config) -> None:
    with pytest.raises(UserError, match="plateau_stop=True needs plateau_evals"):
        tiny_config(plateau_stop=True)
