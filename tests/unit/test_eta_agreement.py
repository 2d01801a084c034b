"""One event stream, five front ends, one ETA: the headless line, the monitor, `tuigpt watch`, `tuigpt runs` and
bench agree.

(Before the numbers lived in one module, the headless line said 24m43s while the monitor said 12:32.)
"""

from __future__ import annotations

import asyncio
import io
import math
import re
from pathlib import Path

from support import until
from support.fake_run import FakeController, iteration, run_started

from tuigpt.cli.bench import BenchResult
from tuigpt.control.follower import WatchController
from tuigpt.run import fmt
from tuigpt.run.events import EvalResult, Event, StateChanged, RunState
from tuigpt.run.metrics_log import MetricsWriter
from tuigpt.run.numbers import RunProgress, evals_remaining
from tuigpt.run.status import summarize
from tuigpt.ui.app import TuiGptApp
from tuigpt.ui.headless import HeadlessPrinter
from tuigpt.ui.widgets.status import StatusBar

MAX_ITERS, EVAL_INTERVAL, LAST = 1000, 150, 200  # the final eval at 1000 is not a multiple of 150


def stream() -> list[Event]:
    t = 1_700_000_000.0
    events: list[Event] = [run_started(max_iters=MAX_ITERS, eval_interval=EVAL_INTERVAL, time=t),
                           StateChanged(state=RunState.RUNNING, iter=0, time=t)]
    events.append(EvalResult(iter=0, train_loss=4.0, val_loss=4.0, best_val_loss=4.0, is_best=True, seconds=3.0, time=t))
    train = 0.0
    for i in range(1, LAST + 1):
        ms = 100.0 + 40.0 * math.sin(i) + (900.0 if i <= 5 else 0.0)  # slow warm-up, then a noisy 100 ms
        t += ms / 1000.0
        train += ms / 1000.0
        events.append(iteration(i, time=t, ms=ms, train=train))
        if i % EVAL_INTERVAL == 0:
            t += 5.0
            events.append(EvalResult(iter=i, train_loss=2.0, val_loss=2.1, best_val_loss=2.1, is_best=True, seconds=5.0,
                                     time=t))
    return events


def _eta_in(text: str) -> str:
    match = re.search(r"ETA (\S+(?: \([^)]*\))?)", text)  # the likely time and its range
    assert match, text
    return match.group(1)


def _monitor_eta(controller: object) -> str:
    app = TuiGptApp(controller, watching=isinstance(controller, WatchController))  # type: ignore[arg-type]
    shown: list[str] = []

    async def body() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: (p := app.model.snapshot().progress).last is not None and p.last.iter == LAST
                        and p.n_evals == 2, what="the whole stream")
            app.redraw()
            await pilot.pause()
            status = app.query_one(StatusBar)
            shown.append(" ".join(str(w.render()) for w in status.query("Static")))

    asyncio.run(body())
    return _eta_in(shown[0])


def test_headless_monitor_watch_and_bench_show_the_same_eta(tmp_path: Path) -> None:
    events = stream()
    expected = RunProgress()
    for e in events:
        expected.observe(e)
    seconds = expected.eta_seconds()
    assert seconds is not None and expected.evals == 2  # the eval at 0 took 3 s, the one at 150 took 5 s
    want = fmt.eta(expected.eta())

    out = io.StringIO()
    printer = HeadlessPrinter(out)
    for e in events:
        printer(e)
    assert _eta_in([line for line in out.getvalue().splitlines() if line.startswith(f"iter {LAST}/")][0]) == want

    assert _monitor_eta(FakeController(events)) == want

    run_dir = tmp_path / "run"
    writer = MetricsWriter(run_dir / "metrics.jsonl", log_interval=1)
    for e in events:
        writer(e)
    writer.close()
    watcher = WatchController(run_dir, stale_after=600)
    try:
        assert _monitor_eta(watcher) == want
    finally:
        watcher.close()
    running = summarize(run_dir, lambda _: True)  # `tuigpt runs` on the same file, as if the run still went on
    # (its table shows when and the likely time left, not the range: the same likely time)
    assert fmt.duration(running.eta_seconds) == fmt.duration(seconds) and running.eta_at == events[-1].time + running.eta_seconds

    # bench projects a run from its measured ms/step and eval time with the same formula: at the same speed and
    # eval time, its max_iters row is the untrained eval plus the ETA a run shows at iteration 0
    # (the ETA's speed is its window's mean step, and an eval the mean of those after the first: bench's mean step)
    ms = (expected.eta_seconds_per_iter or 0.0) * 1000.0
    per_eval = expected.eval_cost(ms / 1000.0)[0]
    bench = BenchResult(label="", n_params=1, shape="", tokens_per_iter=1, flops_per_token=1.0, device="cpu",
                        dtype="float32", dtype_reason="", threads=1, compile=False, step_ms=[ms] * 10,
                        first_step_ms=ms, forward_ms=per_eval * 1000.0 / (2 * 25), peak_flops=None, peak_label="",
                        peak_rss_bytes=None, gpu_max_bytes=None, max_iters=MAX_ITERS, eval_interval=EVAL_INTERVAL,
                        eval_batches=2 * 25)
    expected.iteration = 0  # the same run, just after its untrained eval
    assert fmt.duration(bench.projected_seconds(MAX_ITERS)) == fmt.duration(per_eval + expected.eta_seconds())
    assert expected.eta_seconds() > MAX_ITERS * ms / 1000.0 + (evals_remaining(0, MAX_ITERS, EVAL_INTERVAL) - 1) * \
        per_eval, "the final eval at max_iters is counted"
