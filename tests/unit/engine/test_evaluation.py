"""The eval publishes its progress: the first batch at once, then at most a few times a second."""

from __future__ import annotations

from support import Recorder

from tuigpt.engine.trainer import Trainer
from tuigpt.run.events import EvalProgress, EvalResult


def test_the_first_eval_says_how_far_it_is_before_its_result(tiny_config) -> None:  # noqa: ANN001
    trainer = Trainer(tiny_config(max_iters=1, eval_iters=6))
    rec = Recorder()
    trainer.bus.subscribe(rec)
    trainer.run()
    first = rec.events.index(rec.of(EvalResult)[0])
    progress = [e for e in rec.events[:first] if isinstance(e, EvalProgress)]
    assert progress and progress[0].done == 1 and progress[0].total == 12 and progress[0].iter == 0
    assert all(0 < p.done < p.total for p in progress)  # the result itself says it is done
    # throttled: after the first, one per PROGRESS_EVERY at most
    times = [p.seconds for p in progress[1:]]
    assert all(b - a >= 0.2 for a, b in zip(times, times[1:]))
