"""No failure in the monitor stops training: a pane, the chart or a handler that raises is shown in place and
logged; if the app itself dies, the run goes on headless."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support import until
from textual.app import App

from tuigpt.engine.trainer import Trainer
from tuigpt.host.local import LocalRun
from tuigpt.run.commands import Stop
from tuigpt.run.metrics_log import read_metrics
from tuigpt.ui import braille
from tuigpt.ui.app import TuiGptApp
from tuigpt.ui.widgets import speed
from tuigpt.ui.widgets.events_log import EventsLog
from tuigpt.ui.widgets.loss import LossChart


def _boom(*_: object, **__: object) -> None:
    raise RuntimeError("injected pane bug")


def test_failing_panes_and_handlers_show_their_error_and_training_goes_on(tiny_config, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(speed, "count", _boom)  # the speed pane raises on every redraw
    monkeypatch.setattr(braille, "render", _boom)  # the chart raises on every paint
    run = LocalRun(Trainer(tiny_config(max_iters=40, eval_interval=20)))
    app = TuiGptApp(run, config_path="tiny.yaml")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.outcome is not None, 120, "the run to finish")
            app.redraw()
            await pilot.pause()
            log = "\n".join(app.query_one(EventsLog).messages)
            assert "monitor: speed failed (RuntimeError: injected pane bug" in log and "training goes on" in log
            assert log.count("monitor: speed failed") == 1  # once, not at every redraw
            assert "speed failed: RuntimeError: injected pane bug" in str(app.query_one("#speed-text").render())
            chart = app.query_one(LossChart)
            await until(pilot, lambda: "chart failed: RuntimeError" in chart.render_line(0).text, 10, "the chart")
            await until(pilot, lambda: "monitor: loss chart failed" in "\n".join(app.query_one(EventsLog).messages))
            assert app.is_running and "done at iter 40" in log
            await pilot.press("q")

    try:
        asyncio.run(main())
    finally:
        run.send(Stop(save=False))
        run.wait(30)
    assert run.outcome is not None and run.outcome.reason == "done" and run.outcome.iter == 40
    assert app.crashed is None


def test_the_run_trains_on_headless_when_the_app_itself_dies(tiny_config, monkeypatch, capsys) -> None:  # noqa: ANN001
    """An error Textual cannot survive (raised outside any guarded code) ends the app, not the run: it trains on
    with the headless lines, writes its finish record and exits 0; the monitor's traceback goes to train.log."""
    from tuigpt.host import wiring

    started = TuiGptApp._start_run

    def start_then_break(self: TuiGptApp) -> None:
        started(self)
        raise RuntimeError("monitor bug outside the guards")

    monkeypatch.setattr(TuiGptApp, "_start_run", start_then_break)
    monkeypatch.setattr(TuiGptApp, "run", lambda self: App.run(self, headless=True, size=(80, 24)))
    config = tiny_config(max_iters=30, eval_interval=10)
    code = wiring.train(config, config_path=None, resume=False, headless=False)
    out, err = capsys.readouterr()
    assert code == 0
    assert "the monitor failed (RuntimeError: monitor bug outside the guards); training goes on" in err
    assert "done at iter 30" in out  # the headless printer's closing line
    run_dir = Path(config.out_dir) / "tiny"
    assert [r for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "finish"][-1]["reason"] == "done"
    assert (run_dir / "last.pt").exists()
    assert "monitor bug outside the guards" in (run_dir / "train.log").read_text()


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_log_y_and_resizes_redraw_the_same_chart(size: tuple[int, int]) -> None:
    """The crash this replaces: plotext took log10 of its stored data in place on every build."""
    from support.fake_run import FakeController, demo_script

    app = TuiGptApp(FakeController(demo_script(iters=600)))

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            app.redraw()
            await pilot.press("l")
            chart = app.query_one(LossChart)
            first = [chart.render_line(y).text for y in range(chart.size.height)]
            for w, h in [(80, 24), (120, 40), (81, 25), size] * 2:
                await pilot.resize_terminal(w, h)
                await pilot.pause()
            again = [chart.render_line(y).text for y in range(chart.size.height)]
            assert again == first and any("⣿" in line for line in first) and "log y" in str(chart.border_title)
            assert app.is_running

    asyncio.run(main())
