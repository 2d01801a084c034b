"""The monitor's health views: the Health pane (`h`), a typed target (`T`) and its projection, the sample timeline
(`[` / `]`), and alerts (toast + the bytes for the terminal)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace

import pytest
from support.fake_run import T0, FakeController, iteration, run_started
from textual.pilot import Pilot

from tuigpt.run.events import EvalResult, Event, NanDetected, Notice, RunFinished, SampleGenerated
from tuigpt.ui.app import TuiGptApp
from tuigpt.ui.widgets.health import HealthPane, render_health, spark
from tuigpt.ui.widgets.target_input import CLEAR, TargetDialog, parse_target

from support import until

GROUPS = ["embed", "block 0", "block 1", "block 2", "block 3", "head"]


def health_script(iters: int = 600, target: float | None = 1.6, timeline: bool = True) -> list[Event]:
    start = run_started(max_iters=5000, eval_interval=50)
    config = dict(start.config, log_interval=10, grad_clip=1.0, alerts=True)
    if target is not None:
        config["target_loss"] = target
    events: list[Event] = [replace(start, config=config)]
    for i in range(1, iters + 1):
        t = T0 + i * 0.12
        grad = 0.6 + 0.5 * math.exp(-i / 80) + (3.0 if i == 300 else 0.0)
        layers = [{"name": g, "grad": grad / (k + 1), "weight": 8.0 + k, "update": 1e-3 * (k + 1)}
                  for k, g in enumerate(GROUPS)] if i % 10 == 0 else None
        events.append(replace(iteration(i, time=t), grad_norm=grad, clipped=grad > 1.0, clip_rate=min(1.0, 40 / i),
                              lr=1e-3 * min(1.0, i / 100), update_ratio=2e-3 if i % 10 == 0 else None, layers=layers))
        if i % 50 == 0:
            val = events[-1].loss + 0.05  # type: ignore[attr-defined]
            events.append(EvalResult(iter=i, train_loss=val - 0.05, val_loss=val, best_val_loss=val, is_best=True,
                                     seconds=1.0, time=t + 0.01))
            if timeline:
                events.append(SampleGenerated(iter=i, prompt="\n", text=f"text of eval {i}", seconds=0.2,
                                              timeline=True, time=t + 0.02))
    return events


def drive(body, script: list[Event], size: tuple[int, int] = (120, 40)) -> TuiGptApp:  # noqa: ANN001
    controller = FakeController(script)
    app = TuiGptApp(controller, clock=lambda: T0 + 1000.0)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            app.redraw()
            await pilot.pause()
            await body(app, pilot, controller)

    asyncio.run(main())
    return app


def test_h_shows_the_health_pane_in_the_loss_charts_place_at_both_sizes() -> None:
    for size in ((120, 40), (80, 24)):
        async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
            pane = app.query_one(HealthPane)
            assert not pane.display and app._loss.display
            await pilot.press("h")
            await until(pilot, lambda: pane.display and pane.view is not None and pane.view.layers)
            assert not app._loss.display
            lines = str(pane.render()).splitlines()
            labelled = {line[:11].strip(): line for line in lines if line[:11].strip()}
            assert lines[0].startswith("grad norm") and "0.6 (clip 1)" in lines[0]
            assert "7% of last 100" in labelled["clipped"] and "1.00e-03" in labelled["lr"]
            assert any(line.startswith("embed") for line in lines) and any("head" in line for line in lines)
            assert len(lines) <= pane.content_size.height
            await pilot.press("h")
            await until(pilot, lambda: app._loss.display and not pane.display)

        drive(body, health_script(), size)


def test_the_per_group_view_fits_short_and_tall_panes() -> None:
    from tuigpt.run.model import RunModel

    model = RunModel()
    for event in health_script(100):
        model.record(event)
    view = model.snapshot().health
    tall = str(render_health(view, 100, 20)).splitlines()
    # four sparklines of 3 rows (the room the groups leave), a header, a row per group with every column
    assert len(tall) == 4 * 3 + 1 + len(GROUPS) <= 20
    assert tall[-1].startswith("head") and tall[-1].rstrip().endswith("0.006")
    short = str(render_health(view, 78, 8)).splitlines()
    assert len(short) <= 8 and sum(line.count(g) for line in short for g in ("embed", "head")) == 2  # side by side
    tiny = str(render_health(view, 40, 5)).splitlines()
    assert len(tiny) <= 5


def test_sparklines_bucket_scale_and_leave_gaps() -> None:
    assert spark([1.0, 2.0, 3.0, 4.0], 4) == "▁▃▆█"
    assert spark([1.0, None, 3.0], 3) == "▁ █"
    assert spark([1.0, 10.0, 100.0], 3, log=True) == "▁▄█"
    assert spark([0.5] * 8, 4, lo=0.0, hi=1.0) == "▄▄▄▄"
    assert len(spark([float(i) for i in range(1000)], 20)) == 20


def test_T_types_a_target_the_status_line_and_chart_title_show_its_projection() -> None:
    assert parse_target("1.5") == 1.5 and parse_target("") == CLEAR and "above 0" in parse_target("-1")
    assert "not a number" in parse_target("abc")

    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        await until(pilot, lambda: "target 1.6" in str(app._status._time_label.render()))  # from the config
        assert "loss 1.6 ≈ iter" in app._loss.border_title or "loss 1.6 reached" in app._loss.border_title
        await pilot.press("T")
        await until(pilot, lambda: isinstance(app.screen, TargetDialog))
        await pilot.press("ctrl+u", *"1.55", "enter")
        await until(pilot, lambda: app.model.snapshot().target.target == 1.55)
        await until(pilot, lambda: "target 1.55" in str(app._status._time_label.render()))
        assert "loss 1.55" in app._loss.border_title and "┄" in app._loss.legend.plain
        assert "you: target loss → 1.55" in "\n".join(app._events_log.messages)

    drive(body, health_script())


def test_brackets_browse_the_sample_timeline_in_the_sample_panes_place() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        timeline = app._timeline
        assert not timeline.display
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: timeline.display and not app._samples.display)
        assert timeline.shown.iter == 600 and "(12 of 12)" in timeline.border_title
        await pilot.press("left_square_bracket", "left_square_bracket")
        await until(pilot, lambda: timeline.shown.iter == 500)
        assert "text of eval 500" in str(timeline._text.render())
        await pilot.press("right_square_bracket", "right_square_bracket", "right_square_bracket")
        await until(pilot, lambda: not timeline.display and app._samples.display)

    drive(body, health_script())


def test_a_contention_toast_goes_when_the_contention_ends_and_warnings_are_short() -> None:
    """The contention toast covered the samples pane for 60 s, and still said "contention" after the events log
    said it was over."""
    from tuigpt.ui.alerts import TOAST_SECONDS

    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        c.emit(Notice(level="warning", topic="contention", message="CPU contention: others used 50%"))
        await until(pilot, lambda: any("contention" in n.message for n in app._notifications))
        assert all(n.timeout <= 15.0 for n in app._notifications)
        c.emit(Notice(level="info", topic="contention", message="CPU contention over after 42s"))
        await until(pilot, lambda: not any("contention" in n.message for n in app._notifications))

    assert TOAST_SECONDS["warning"] <= 15.0 < TOAST_SECONDS["error"]
    drive(body, health_script(60))


def test_alerts_toast_and_ring_and_can_be_off() -> None:
    written: list[str] = []

    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        app.alerts.app = type("Spy", (), {"_driver": type("D", (), {"write": staticmethod(written.append)})(),
                                          "is_headless": False, "notify": app.notify})()
        c.emit(NanDetected(iter=601, cause="loss", loss=float("nan"), grad_norm=None, lr=1e-3, layers=[], recent=[],
                           recent_layers=[], batch_starts=[[1]], action="pause"),
               RunFinished(iter=5000, reason="done", best_val_loss=1.5, last_val_loss=1.5, wall_seconds=1,
                           train_seconds=1, eval_seconds=0, checkpoint_seconds=0, last_checkpoint=None, tokens_seen=1))
        await until(pilot, lambda: app.alerts.sent == ["nan", "done"])
        assert all(w.startswith("\x07") and "\x1b]9;tuigpt " in w for w in written) and len(written) == 2
        await until(pilot, lambda: any("finished at iter 5,000" in n.message for n in app._notifications))

    drive(body, health_script(60))

    async def off(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        c.emit(RunFinished(iter=5000, reason="done", best_val_loss=1.5, last_val_loss=1.5, wall_seconds=1,
                           train_seconds=1, eval_seconds=0, checkpoint_seconds=0, last_checkpoint=None, tokens_seen=1))
        await until(pilot, lambda: app.outcome is not None)
        assert app.alerts.sent == [] and not list(app._notifications)

    script = health_script(60)
    script[0] = replace(script[0], config=dict(script[0].config, alerts=False))  # type: ignore[attr-defined]
    drive(off, script)


def test_a_bad_event_never_escapes_the_health_history_and_the_pane_says_so() -> None:
    from tuigpt.run.model import RunModel

    model = RunModel()
    start = health_script(1)[0]
    model.record(replace(start, config=dict(start.config, grad_clip="not a number")))  # type: ignore[arg-type]
    for event in health_script(20)[1:]:
        model.record(event)
    view = model.snapshot().health
    assert "ValueError" in (view.error or "") and len(view.points) == 20
    assert str(render_health(view, 100, 12)).startswith("health numbers incomplete: ValueError")


def test_the_chart_gets_the_dashed_projection_and_the_target_only_when_it_is_in_reach() -> None:
    from tuigpt.run.model import RunModel
    from tuigpt.ui.widgets.projection import projection_layers

    model = RunModel()
    for event in health_script(600, target=1.6):
        model.record(event)
    snap = model.snapshot()
    view, hv = snap.loss, snap.target
    layers, legend = projection_layers(hv.projection, view, "iter", hv.tokens_per_iter, snap.progress.ms_per_iter)
    target_line, curve = layers
    assert curve.dashed and curve.xs[0] == pytest.approx(600, abs=1) and curve.ys[-1] == pytest.approx(1.6, abs=0.01)
    assert target_line.ys == [1.6, 1.6] and "projection" in legend.plain
    assert curve.xs[-1] == pytest.approx(hv.projection.iter, rel=0.02) or "(cut)" in legend.plain
    model.set_target(0.5)  # far below a curve that flattens out near 1.45: no projection, no line squashing it
    hv = model.snapshot().target
    layers, legend = projection_layers(hv.projection, view, "iter", hv.tokens_per_iter, snap.progress.ms_per_iter)
    assert hv.projection.iter is None and layers == [] and "target 0.5" in legend.plain
