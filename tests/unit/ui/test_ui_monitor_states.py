"""What the monitor shows around the edges of a run: the first eval, an ended run's keys, the panes you scroll,
and header lines that fit the terminal."""

from __future__ import annotations

from support.fake_run import T0, FakeController, demo_script, run_started
from test_ui_app import drive, settle, status_text, text_of
from textual.pilot import Pilot
from textual.widgets import Tabs

from tuigpt.run.events import EvalProgress, Notice, RunFinished, RunState, SampleGenerated, StateChanged
from tuigpt.ui.app import TuiGptApp
from tuigpt.ui.widgets.events_log import EventsLog
from tuigpt.ui.widgets.loss import LossChart
from tuigpt.ui.widgets.samples import SamplesPane
from tuigpt.ui.widgets.status import StatusBar


def footer_keys(app: TuiGptApp) -> set[str]:
    """The keys the footer shows as usable (a binding whose check_action is False is not listed at all)."""
    return {b.binding.key for b in app.active_bindings.values() if b.binding.show and b.enabled}


def test_the_first_eval_says_what_it_does_in_the_header_and_the_empty_chart() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        c.emit(StateChanged(state=RunState.EVALUATING, iter=0, time=T0),
               EvalProgress(iter=0, done=12, total=40, seconds=6.0, time=T0 + 6))
        await settle(pilot)
        status = status_text(app)
        assert "evaluating the untrained model: 12/40 batches, 6s" in status and "ETA n/a: no step yet" in status
        chart = app.query_one(LossChart)
        assert any("evaluating the untrained model: 12/40 batches" in chart.render_line(y).text
                   for y in range(chart.size.height))

    drive(body, FakeController([run_started(time=T0), StateChanged(state=RunState.RUNNING, iter=0, time=T0)]))


def test_an_ended_run_offers_only_the_keys_that_work() -> None:
    ended = demo_script(iters=100) + [RunFinished(
        iter=100, reason="done", best_val_loss=1.6, last_val_loss=1.6, wall_seconds=20.0, train_seconds=12.0,
        eval_seconds=5.0, checkpoint_seconds=1.0, last_checkpoint="last.pt", tokens_seen=1, time=T0 + 20)]

    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        keys = footer_keys(app)
        assert not {"p", "c", "s", "e", "E", "i"} & keys, keys  # gone, not greyed and silently dead
        assert {"l", "z", "x", "n", "question_mark", "q"} <= keys
        await pilot.press("s", "p")
        assert c.commands == []

    for watching in (False, True):  # the same when watching a run that has ended
        controller = FakeController(ended)
        app = TuiGptApp(controller, watching=watching, clock=lambda: T0 + 30)
        drive(body, controller) if not watching else _drive_app(app, body, controller)


def _drive_app(app: TuiGptApp, body, controller: FakeController) -> None:  # noqa: ANN001
    import asyncio

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await body(app, pilot, controller)

    asyncio.run(main())


def test_x_and_n_are_in_the_footer_and_the_first_compact_switch_keeps_n() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        assert {"x", "n"} <= footer_keys(app)
        await pilot.press("n")  # wide layout: n focuses the events, then the samples, and says so
        await pilot.pause()
        assert app.focused is app.query_one(EventsLog)
        assert any("events pane focused" in n.message for n in app._notifications)
        await pilot.press("n")
        assert app.focused is app.query_one(SamplesPane)
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        await pilot.pause()
        assert app.compact and "n" in footer_keys(app)
        await pilot.press("n")
        await settle(pilot)
        assert app.query_one(Tabs).active == "tab-samples"

    drive(body)


def test_samples_keep_a_short_history_you_can_scroll_from_the_keyboard() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        for k in range(3):
            c.emit(SampleGenerated(iter=1000 + k, prompt="ROMEO:", text=f"sample number {k}\n" + "line\n" * 12,
                                   seconds=0.5, time=T0 + k))
        await settle(pilot)
        pane = app.query_one(SamplesPane)
        shown = text_of(pane)
        assert shown.index("sample number 2") < shown.index("sample number 1") < shown.index("sample number 0")
        assert "@ iter 1,001 · prompt ROMEO:" in shown and "older below" in str(pane.border_title)
        pane.focus()
        await pilot.press("end")
        await pilot.pause()
        assert pane.scroll_y > 0

    drive(body)


def test_events_follow_the_newest_line_unless_scrolled_up_and_after_a_layout_switch() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        log = app.query_one(EventsLog)
        c.emit(*(Notice(level="info", message=f"line {k}", time=T0) for k in range(40)))
        await settle(pilot)
        assert log.following and log.scroll_y == log.max_scroll_y > 0
        log.scroll_home(animate=False)
        await pilot.pause()
        assert not log.following
        c.emit(Notice(level="info", message="while scrolled up", time=T0))
        await settle(pilot)
        assert log.scroll_y == 0  # the reader's place is kept
        log.scroll_end(animate=False)
        await pilot.pause()
        assert log.following
        await pilot.resize_terminal(80, 24)  # compact: the events pane is shown again, at its newest line
        await settle(pilot)
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y

    drive(body)


def test_header_lines_fit_80_and_120_columns_and_keep_the_eval_interval() -> None:
    long_reason = "auto: CPU has AMX_BF16 and the matmul benchmark preferred it over float32"
    start = run_started(time=T0)
    start = type(start)(**{**start.__dict__, "dtype_reason": long_reason,
                           "config_path": "configs/some/deeply/nested/folder/train_cpu_optimized.yaml"})
    for size in ((80, 24), (120, 40)):
        async def body(app: TuiGptApp, pilot: Pilot, c: FakeController, width: int = size[0]) -> None:
            await pilot.pause()
            status = app.query_one(StatusBar)
            lines = [str(s.render()) for s in (status._run_line, status._model_line, status._time_label)]
            assert "eval every 250" in lines[1]
            assert all(len(line) <= width for line in lines), lines
            assert "train_cpu_optimized.yaml" in lines[0] and "shakespeare-char  " in lines[0]

        drive(body, FakeController([start] + demo_script(iters=50)[1:]), size=size)
