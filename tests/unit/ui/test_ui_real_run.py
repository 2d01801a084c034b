"""The app in front of a real (tiny) training run on a background thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot

from tuigpt.run.events import IterationStats, RunState
from tuigpt.run.commands import Stop
from tuigpt.host.local import LocalRun
from tuigpt.engine.trainer import Trainer
from tuigpt.ui.app import TuiGptApp
from tuigpt.ui.widgets.events_log import EventsLog


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def log_text(app: TuiGptApp) -> str:
    return "\n".join(app.query_one(EventsLog).messages)


def run_app(run: LocalRun, body: Callable[[TuiGptApp, Pilot], object]) -> TuiGptApp:
    app = TuiGptApp(run, config_path="tiny.yaml")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await body(app, pilot)  # type: ignore[misc]

    try:
        asyncio.run(main())
    finally:  # never leave a trainer thread running after a failed test
        run.send(Stop(save=False))
        run.wait(30)
    return app


def test_a_short_run_finishes_and_the_app_stays_open(tiny_config) -> None:  # noqa: ANN001
    run = LocalRun(Trainer(tiny_config(max_iters=20, eval_interval=10)))

    async def body(app: TuiGptApp, pilot: Pilot) -> None:
        await until(pilot, lambda: app.outcome is not None)
        await pilot.pause()
        app.redraw()
        assert app.state == RunState.DONE and app.is_running
        view = app.model.snapshot().loss
        assert [p[0] for p in view.recent] == list(range(1, 21))  # every iteration, even if messages were merged
        assert [e[0] for e in view.evals] == [0, 10, 20]
        log = log_text(app)
        assert "done at iter 20" in log and "last.pt" in log
        await pilot.press("q")
        await pilot.pause()

    app = run_app(run, body)
    assert app.return_code == 0 and run.outcome is not None and run.outcome.reason == "done"


def test_keys_steer_a_real_run_and_save_and_quit_writes_last_pt(tiny_config) -> None:  # noqa: ANN001
    trainer = Trainer(tiny_config(max_iters=100_000, eval_interval=100_000))
    run = LocalRun(trainer)

    async def body(app: TuiGptApp, pilot: Pilot) -> None:
        await until(pilot, lambda: app.model.snapshot().progress.last is not None)
        await pilot.press("p")
        await until(pilot, lambda: app.state == RunState.PAUSED)
        last = app.model.snapshot().progress.last
        assert isinstance(last, IterationStats)
        await pilot.press("c")
        await until(pilot, lambda: ", command, " in log_text(app))  # "checkpoint …/last.pt (iter 12, command, 0.02s)"
        await pilot.press("E")
        await until(pilot, lambda: "eval interval now 200,000" in log_text(app))
        await pilot.press("q", "enter")
        await until(pilot, lambda: not app.is_running)

    app = run_app(run, body)
    assert app.return_code == 0
    assert run.outcome is not None and run.outcome.reason == "stopped"
    assert Path(trainer.run_dir, "last.pt").exists()
