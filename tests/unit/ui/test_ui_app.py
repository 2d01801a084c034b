"""Pilot tests of the Textual app against the scripted FakeController: every key, every pane."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from support.fake_run import (
    T0,
    FakeController,
    cpu_data,
    demo_script,
    gpu_data,
    iteration,
    run_started,
    script_end_time,
)
from textual.pilot import Pilot
from textual.widgets import Input, Static, Tab, Tabs

from tuigpt.run.commands import CheckpointNow, Sample, SetEvalInterval, Stop, TogglePause
from tuigpt.run.events import (
    EvalResult,
    IterationStats,
    Notice,
    RunFailed,
    RunFinished,
    RunState,
    StateChanged,
    TelemetrySnapshot,
)
from tuigpt.ui.app import TuiGptApp
from tuigpt.ui.messages import TelemetryUpdate, wrap
from tuigpt.ui.widgets.cpu import CpuPane
from tuigpt.ui.widgets.events_log import EventsLog
from tuigpt.ui.widgets.failure import FailureBanner
from tuigpt.ui.widgets.gpu import GpuPane
from tuigpt.ui.widgets.help_screen import HelpScreen
from tuigpt.ui.widgets.interval_input import IntervalDialog, parse_interval
from tuigpt.ui.widgets.loss import LossChart
from tuigpt.ui.widgets.mfu import MfuPane
from tuigpt.ui.widgets.quit_dialog import QuitDialog
from tuigpt.ui.widgets.samples import SamplesPane
from tuigpt.ui.widgets.status import StatusBar

Body = Callable[[TuiGptApp, Pilot, FakeController], Awaitable[None]]


def make_app(controller: FakeController) -> TuiGptApp:
    return TuiGptApp(controller, config_path="configs/shakespeare_char.py", clock=lambda: script_end_time(controller.script) + 1.0)


def drive(body: Body, controller: FakeController | None = None, size: tuple[int, int] = (120, 40)) -> TuiGptApp:
    """Run the app headless with the fake run, let ``body`` press keys, return the app after it closed."""
    controller = controller or FakeController(demo_script(iters=300))
    app = make_app(controller)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await body(app, pilot, controller)

    asyncio.run(main())
    return app


async def settle(pilot: Pilot) -> None:
    await pilot.pause()
    pilot.app.redraw()
    await pilot.pause()


def text_of(widget: Any) -> str:
    """What a widget shows, as plain text."""
    if isinstance(widget, EventsLog):
        return "\n".join(widget.messages)
    if isinstance(widget, Static):
        return str(widget.render())
    return "\n".join(str(s.render()) for s in widget.query(Static))


def log_text(app: TuiGptApp) -> str:
    return text_of(app.query_one(EventsLog))


def status_text(app: TuiGptApp) -> str:
    return text_of(app.query_one(StatusBar))


# ---------------------------------------------------------------- what is shown


def test_main_screen_shows_every_pane() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        status = status_text(app)
        assert "RUNNING" in status and "shakespeare-char" in status and "configs/shakespeare_char.py" in status
        assert "10.7M params" in status and "cuda bfloat16" in status and "GPU supports bf16" in status
        assert "iter 299/5,000" in status and "eval every 250" in status
        assert "elapsed 39s" in status and "ETA" in status and "→" in status
        speed = text_of(app.query_one("#speed"))
        assert "ms/iter" in speed and "tok/s" in speed and "avg" in speed and "evals" in speed
        mfu = text_of(app.query_one(MfuPane))
        assert "now" in mfu and "avg" in mfu and "H100 SXM bf16 dense 989 TFLOPS" in mfu
        cpu = text_of(app.query_one(CpuPane))
        assert "of 8" in cpu and "3.15 GHz" in cpu and "71°C" in cpu and "48.5 W" in cpu and "18.0/64.0 GiB · RSS 2.2 GiB" in cpu
        assert "share    tuigpt 48% · others 3%" in cpu and "waits    4% of the time\n" in cpu
        assert app.query_one(CpuPane).border_title == "CPU"
        gpu = text_of(app.query_one(GpuPane))
        assert "NVIDIA H100" in gpu and "97%" in gpu and "41.0/80.0 GiB" in gpu and "512/700 W" in gpu and "12.0 GiB alloc" in gpu
        assert "ROMEO" in text_of(app.query_one(SamplesPane))
        log = log_text(app)
        assert "tuigpt training shakespeare-char" in log and "eval iter 250 |" in log and "(best)" in log
        assert "checkpoints/shakespeare-char/best.pt" in log and "warning: data loader" in log
        assert "best val" in app.query_one(LossChart).legend.plain
        assert app.query_one(LossChart).drawn_range == (0, 299)
        keys = {b.binding.key for b in app.active_bindings.values() if b.binding.show}
        assert {"p", "c", "s", "e", "E", "i", "l", "z", "question_mark", "q"} <= keys

        c.emit(Notice(level="error", message="disk full", time=T0), Notice(level="info", message="just so you know", time=T0))
        await settle(pilot)
        error = next(line for line in app.query_one(EventsLog).lines if "disk full" in line.text)
        assert any(seg.style is not None and seg.style.color is not None and seg.style.color.name == "red" for seg in error)
        assert "just so you know" in log_text(app)

        # a burst of iterations: messages may be merged, the loss history keeps every one
        c.emit(*(iteration(i, time=T0) for i in range(300, 1300)))
        await settle(pilot)
        assert [p[0] for p in app.model.snapshot(recent_window=2000).loss.recent] == list(range(0, 1300))
        assert "iter 1,299/5,000" in status_text(app)

    drive(body)


def test_resumed_run_without_peak_or_telemetry() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        view = app.model.snapshot().loss
        assert view.whole[0][0] == 0 and view.whole[-1][0] == 699
        assert any(e[0] == 250 for e in view.evals)
        assert "tuigpt resuming shakespeare-char" in log_text(app) and "iter 600/5000" in log_text(app)
        assert "earlier history: 600 logged iterations" in log_text(app)
        assert "resumed at 600" in status_text(app)
        assert "MFU n/a: no peak FLOP/s known" in text_of(app.query_one(MfuPane))

        # telemetry a machine does not have: "n/a", never a crash
        empty_cpu = cpu_data(**{k: None for k in vars(cpu_data()) if k not in ("temperatures", "unavailable")})
        c.emit(TelemetrySnapshot(kind="cpu", data=empty_cpu, time=T0), TelemetrySnapshot(kind="gpu", data=gpu_data(0, status="no GPU", torch_allocated=None, torch_reserved=None, torch_max_allocated=None), time=T0))
        await settle(pilot)
        cpu = text_of(app.query_one(CpuPane))
        assert "freq     n/a: not reported" in cpu and "temp     71°C" in cpu  # every n/a says why
        assert text_of(app.query_one(GpuPane)).strip() == "none: no GPU"
        why = {"package_power_w": "no RAPL powercap in sysfs", "throttling": "no throttle counters and no base clock to compare with"}
        c.emit(TelemetrySnapshot(kind="cpu", data=cpu_data(package_power_w=None, throttling=None, unavailable=why), time=T0),
               TelemetrySnapshot(kind="gpu", data=gpu_data(0, status="NVML not available: NVML Shared Library Not Found"), time=T0))
        await settle(pilot)
        cpu = text_of(app.query_one(CpuPane))
        assert "power    n/a: no RAPL powercap in…" in cpu and "throttle n/a: no throttle counters…" in cpu
        assert app.query_one(CpuPane).tooltip and "no base clock to compare with" in str(app.query_one(CpuPane).tooltip)
        gpu = app.query_one(GpuPane)
        assert text_of(gpu).strip() == "none: NVML not available"
        assert gpu.region.height == 3  # one line in its border: the room goes to the samples
        await pilot.press("question_mark")
        await pilot.pause()
        shown = " ".join(str(s.render()) for s in app.screen.query(Static))
        assert "no base clock to compare with" in shown and "NVML Shared Library Not Found" in shown
        await pilot.press("escape")
        c.emit(TelemetrySnapshot(kind="cpu", data=object(), time=T0), TelemetrySnapshot(kind="gpu", data=None, time=T0))
        await settle(pilot)
        assert "n/a" in text_of(app.query_one(CpuPane))
        assert "no GPU" in text_of(app.query_one(GpuPane))
        c.emit(TelemetrySnapshot(kind="cpu", data=cpu_data(per_core_percent=["x", None]), time=T0))
        await settle(pilot)  # garbage in a field is reported in the pane, not raised
        assert app.is_running

    drive(body, FakeController(demo_script(iters=100, start_iter=600, peak=False)))


def test_the_cpu_pane_says_when_contention_sets_the_speed_and_when_it_stopped() -> None:
    """Issue 27: "load 100% of 2" while another trainer had half the CPUs and steps went 5-10x slower."""
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        pane = app.query_one(CpuPane)
        c.emit(TelemetrySnapshot(kind="cpu", data=cpu_data(per_core_percent=[100.0, 100.0], own_share=0.48,
                                                            others_share=0.52, share_cpus=2, stretch=1.93,
                                                            contended=True), time=T0))
        await settle(pilot)
        cpu = text_of(pane)
        assert "load     100% of 2" in cpu and "share    tuigpt 48% · others 52%" in cpu
        assert "waits    48% of the time, for others" in cpu and pane.border_title == "CPU: contention sets the speed"
        assert str(app.query_one("#tab-cpu", Tab).label) == "CPU contended"  # a tab away in a small terminal
        c.emit(TelemetrySnapshot(kind="cpu", data=cpu_data(per_core_percent=[60.0, 40.0], own_share=0.5,
                                                            others_share=0.01, share_cpus=1, stretch=1.01,
                                                            contended=False), time=T0))
        await settle(pilot)
        cpu = text_of(pane)
        assert "share    tuigpt 50% · others 1% of 1" in cpu  # pinned to one of the two CPUs: the share says of what
        assert "waits    1% of the time\n" in cpu and pane.border_title == "CPU"
        assert str(app.query_one("#tab-cpu", Tab).label) == "CPU"
        c.emit(TelemetrySnapshot(kind="cpu", data=cpu_data(own_share=None, others_share=None, stretch=None,
                                                            contended=None, unavailable={
                                                                "others_share": "needs two samples"}), time=T0))
        await settle(pilot)
        assert "share    n/a: needs two samples" in text_of(pane) and "waits    n/a" in text_of(pane)

    drive(body)


def test_gpu_pane_reads_the_samplers_field_names() -> None:
    from tuigpt.run.readings import GpuReading, GpuSnapshot

    reading = GpuReading(index=1, name="A100", mem_used_bytes=2 * 2**30, mem_total_bytes=40 * 2**30, util_percent=55.0,
                         temp_c=None, power_w=None, power_limit_w=None, sm_clock_mhz=None, throttle_reasons=["thermal"])
    text = GpuPane.describe(GpuSnapshot(gpus=[reading], torch_allocated=None, torch_reserved=None,
                                        torch_max_allocated=None, status="ok")).plain
    assert "55%" in text and "2.0/40.0 GiB" in text and "n/a" in text and "thermal" in text


def test_high_rate_messages_replace_older_ones_of_their_kind() -> None:
    cpu, gpu = wrap(TelemetrySnapshot(kind="cpu", data=None)), wrap(TelemetrySnapshot(kind="gpu", data=None))
    assert isinstance(cpu, TelemetryUpdate) and not cpu.can_replace(gpu)
    assert cpu.can_replace(wrap(TelemetrySnapshot(kind="cpu", data=None)))
    assert not wrap(Notice(level="info", message="x")).can_replace(wrap(Notice(level="info", message="y")))


# ---------------------------------------------------------------- keys


def test_p_c_s_send_their_commands_and_show_the_result() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        await pilot.press("p")
        await settle(pilot)
        assert c.commands == [TogglePause()]
        assert "PAUSED" in status_text(app) and "(paused)" in status_text(app)
        assert "you: pause" in log_text(app) and "paused at iter 299" in log_text(app)
        await pilot.press("p")
        await settle(pilot)
        assert c.commands == [TogglePause(), TogglePause()]
        assert "RUNNING" in status_text(app) and "you: resume" in log_text(app)

        await pilot.press("c")
        await settle(pilot)
        assert c.commands[-1] == CheckpointNow()
        assert "you: checkpoint now" in log_text(app)
        assert re.search(r"checkpoint checkpoints/shakespeare-char/last\.pt \(iter \d+, command, [\d.]+s\)", log_text(app))

        await pilot.press("s")
        await settle(pilot)
        assert c.commands[-1] == Sample()  # prompt, length, temperature: the config's
        assert c.commands[-1].max_new_tokens is None and c.commands[-1].temperature is None
        assert "fresh sample text" in text_of(app.query_one(SamplesPane))
        assert len(c.commands) == 4

    drive(body)


def test_eval_interval_keys_never_go_below_one_and_stack_before_the_answer() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        await pilot.press("e", "e", "E", "E")
        await settle(pilot)
        # the trainer has not answered: each key works from the interval asked for last
        assert c.commands == [SetEvalInterval(1), SetEvalInterval(1), SetEvalInterval(2), SetEvalInterval(4)]

    drive(body, FakeController([run_started(eval_interval=2, time=T0)], react=False))


def test_l_z_and_help_change_only_the_view() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        chart = app.query_one(LossChart)
        assert chart.border_title == "loss · whole run · linear y" and chart.drawn_range == (0, 1199)
        await pilot.press("l")
        assert chart.border_title == "loss · whole run · log y"
        await pilot.press("z")
        assert chart.border_title == "loss · recent · log y"
        assert chart.drawn_range == (700, 1199)  # the last 500 iterations
        await pilot.press("l", "z")
        assert chart.border_title == "loss · whole run · linear y" and chart.drawn_range == (0, 1199)
        assert c.commands == []

        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        shown = " ".join(str(s.render()) for s in app.screen.query(Static))
        for key, _ in TuiGptApp.HELP:
            assert key in shown
        await pilot.press("p")  # run keys do nothing while a dialog is open
        assert c.commands == []
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)

    drive(body, FakeController(demo_script(iters=1200)))


def test_e_shift_e_and_i_change_the_eval_interval() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        await pilot.press("e")
        await settle(pilot)
        assert c.commands == [SetEvalInterval(125)]
        assert "eval every 125" in status_text(app) and "eval interval now 125" in log_text(app)
        await pilot.press("E", "E")
        await settle(pilot)
        assert c.commands == [SetEvalInterval(125), SetEvalInterval(250), SetEvalInterval(500)]
        c.commands.clear()

        # i: type an exact one; bad input is an error message, not a crash
        await pilot.press("i")
        await pilot.pause()
        assert isinstance(app.screen, IntervalDialog)
        field = app.screen.query_one(Input)
        assert field.value == "500"
        field.value = ""
        await pilot.press("a", "b", "c", "enter")
        await pilot.pause()
        assert isinstance(app.screen, IntervalDialog)
        assert "not a whole number" in text_of(app.screen.query_one("#interval-error"))
        field.value = ""
        await pilot.press("0", "enter")
        await pilot.pause()
        assert "at least 1" in text_of(app.screen.query_one("#interval-error"))
        assert c.commands == []
        field.value = ""
        await pilot.press("3", "0", "0", "enter")
        await settle(pilot)
        assert not isinstance(app.screen, IntervalDialog)
        assert c.commands == [SetEvalInterval(300)]
        assert "eval every 300" in status_text(app)
        await pilot.press("i", "escape")  # escape cancels
        await pilot.pause()
        assert not isinstance(app.screen, IntervalDialog) and c.commands == [SetEvalInterval(300)]

    drive(body)


def test_parse_interval() -> None:
    assert parse_interval(" 1,000 ") == 1000
    assert parse_interval("1") == 1
    for bad in ("", "-3", "0", "2.5", "x", "99999999999"):
        assert isinstance(parse_interval(bad), str)


# ---------------------------------------------------------------- quitting


def test_q_enter_saves_and_quits() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, QuitDialog)
        assert app.screen.focused is not None and app.screen.focused.id == "save"
        await pilot.press("enter")
        await pilot.pause()

    app = drive(body)
    assert app.return_code == 0 and app.return_value == 0
    controller = app.controller
    assert isinstance(controller, FakeController) and controller.commands == [Stop(save=True)]


def test_quit_without_saving() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        await pilot.press("q", "down", "enter")
        await pilot.pause()

    app = drive(body)
    assert app.return_code == 0
    assert app.controller.commands == [Stop(save=False)]  # type: ignore[attr-defined]


def test_cancel_keeps_the_run_going() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        await pilot.press("q", "escape")
        await pilot.pause()
        assert not isinstance(app.screen, QuitDialog) and app.is_running
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("down", "down", "enter")  # the Cancel button
        await pilot.pause()
        assert not isinstance(app.screen, QuitDialog) and app.is_running
        assert c.commands == []
        assert "quit cancelled" in log_text(app)

    drive(body)


def test_save_and_quit_waits_for_the_run_to_finish() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        await pilot.press("q", "enter")
        await settle(pilot)
        assert app.is_running and c.commands == [Stop(save=True)]
        assert "saving checkpoint…" in status_text(app)
        assert "p" not in {b.binding.key for b in app.active_bindings.values() if app.check_action(b.binding.action, ()) is True}
        c.emit(RunFinished(iter=299, reason="stopped", best_val_loss=None, last_val_loss=None, wall_seconds=1.0, train_seconds=1.0, eval_seconds=0.0, checkpoint_seconds=0.0, last_checkpoint="last.pt", tokens_seen=1, time=T0))
        await pilot.pause()
        await pilot.pause()

    app = drive(body, FakeController(demo_script(iters=300), react=False))
    assert app.return_code == 0 and not app.is_running


def test_finished_run_stays_open_and_q_exits_at_once() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        c.emit(
            StateChanged(state=RunState.DONE, iter=300, time=T0 + 40),
            RunFinished(iter=300, reason="done", best_val_loss=1.61, last_val_loss=1.63, wall_seconds=40.0, train_seconds=36.0, eval_seconds=3.0, checkpoint_seconds=1.0, last_checkpoint="checkpoints/shakespeare-char/last.pt", tokens_seen=4_915_200, time=T0 + 40),
        )
        await settle(pilot)
        assert app.is_running
        assert "DONE" in status_text(app) and "iter 300/5,000" in status_text(app) and "ETA" not in status_text(app)
        log = log_text(app)
        assert "done at iter 300" in log and "best val loss 1.6100" in log and "checkpoint checkpoints/shakespeare-char/last.pt" in log
        # the footer offers only what still works: nothing to pause, checkpoint, sample or re-schedule
        shown = {b.binding.key for b in app.active_bindings.values() if b.binding.show and b.enabled}
        assert not {"p", "c", "s", "e", "E", "i"} & shown and {"l", "z", "x", "n", "q"} <= shown
        await pilot.press("q")
        await pilot.pause()
        assert not isinstance(app.screen, QuitDialog)

    app = drive(body)
    assert app.return_code == 0 and app.controller.commands == []  # type: ignore[attr-defined]


def test_failed_run_shows_the_error_and_exits_with_1() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        c.emit(RunFailed(iter=300, message="RuntimeError: boom", traceback="Traceback (most recent call last):\n  File x\nRuntimeError: boom", last_checkpoint="checkpoints/shakespeare-char/best.pt", time=T0 + 40))
        await settle(pilot)
        banner = app.query_one(FailureBanner)
        assert banner.display
        shown = text_of(banner)
        assert "RUN FAILED" in shown and "RuntimeError: boom" in shown and "checkpoints/shakespeare-char/best.pt" in shown
        assert "ERROR" in status_text(app)
        assert "Traceback" in log_text(app)
        await pilot.press("q")
        await pilot.pause()

    app = drive(body)
    assert app.return_code == 1 and app.return_value == 1


# ---------------------------------------------------------------- small terminals


def test_resizing_switches_layouts() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        assert not app.compact
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert app.compact and app.check_action("next_pane", ()) is True
        # compact: the chart, then one pane at a time picked with tabs or n
        tabs = app.query_one(Tabs)
        assert tabs.display and app.query_one("#events").display
        assert app.query_one("#loss").region.height >= 8
        await pilot.press("n")
        await pilot.pause()
        assert app.query_one("#samples").display and not app.query_one("#events").display
        await pilot.press("n")
        await pilot.pause()
        assert app.query_one("#speed").region.height > 0 and tabs.active == "tab-speed"
        assert app.query_one("#events").region.height == 0
        await pilot.resize_terminal(120, 40)
        await settle(pilot)
        assert not app.compact
        for pane in ("events", "samples", "speed", "mfu", "cpu", "gpu"):
            assert app.query_one(f"#{pane}").region.height > 0
        await pilot.resize_terminal(60, 20)  # smaller than we aim for: cramped, but no crash
        await pilot.press("l", "z", "n")
        await settle(pilot)
        assert app.is_running

    drive(body)


def test_events_before_the_run_started_are_fine() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        assert "waiting for the run to start" in status_text(app)
        await pilot.press("e")  # interval unknown: a notice, no command
        assert c.commands == []
        c.emit(EvalResult(iter=5, train_loss=1.0, val_loss=1.1, best_val_loss=1.1, is_best=True, seconds=1.0, time=T0))
        c.emit(IterationStats(iter=5, loss=2.0, lr=0.0, ms_per_iter=1.0, tokens_per_sec=1.0, mfu=None, tokens_seen=1, train_seconds=1.0, time=T0))
        await settle(pilot)
        assert app.is_running

    drive(body, FakeController([]))
