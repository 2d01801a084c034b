"""A run on its own thread: a resumed run publishes its history first, from a metrics.jsonl its writer owns."""

from __future__ import annotations

from support import Recorder

from tuigpt.engine.trainer import Trainer
from tuigpt.host.local import LocalRun
from tuigpt.run.events import EvalResult, HistoryLoaded, IterationStats, RunFinished, RunStarted
from tuigpt.run.metrics_log import MetricsWriter, history_events, load_history, read_metrics


def _train(cfg, resume: bool = False) -> Trainer:
    trainer = Trainer(cfg, resume=resume)
    writer = MetricsWriter(trainer.run_dir.metrics, cfg.log_interval, resume_at=trainer.iter_num if resume else None)
    trainer.bus.subscribe(writer)
    trainer.run()
    writer.close()
    return trainer


def test_a_resumed_run_cuts_the_lost_stretch_and_publishes_its_history_first(tiny_config) -> None:
    first = _train(tiny_config(max_iters=4, eval_interval=2))
    metrics = first.run_dir.metrics
    with open(metrics, "a") as f:  # what a crash after the last checkpoint leaves: iterations 5 and 6
        f.write('{"type":"iter","iter":5,"loss":1.0}\n{"type":"iter","iter":6,"loss":1.0}\n')
    trainer = Trainer(tiny_config(max_iters=6, eval_interval=2), resume=True)
    assert [r["iter"] for r in read_metrics(metrics) if r["type"] == "iter"][-1] == 6, "nothing cut before the writer"
    writer = MetricsWriter(metrics, 1, resume_at=trainer.iter_num)
    history = history_events(load_history(metrics))
    assert [e.iter for e in history if isinstance(e, IterationStats)] == [1, 2, 3, 4]
    rec = Recorder()
    run = LocalRun(trainer, history)
    run.subscribe(rec)
    trainer.bus.subscribe(writer)
    run.start()
    assert run.wait(60)
    writer.close()
    assert isinstance(rec.events[0], HistoryLoaded) and isinstance(rec.events[1], RunStarted)
    assert [e.iter for e in rec.events[0].events if isinstance(e, EvalResult)] == [0, 2, 4]
    assert isinstance(run.ending, RunFinished) and run.ending.iter == 6
    assert [r["iter"] for r in read_metrics(metrics) if r["type"] == "iter"] == [1, 2, 3, 4, 5, 6]
