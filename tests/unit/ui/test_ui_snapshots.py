"""Snapshot tests of the main screen, fed by the deterministic fake event stream.

Everything time-dependent is pinned: events carry fixed times, the app's clock
is injected, and the local time zone is UTC. Update the SVGs after a deliberate
change with `pytest tests/unit/ui/test_ui_snapshots.py --snapshot-update`, and look at
them (the report pytest-textual-snapshot writes shows the differences).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import until
from support.fake_run import FakeController, demo_script, script_end_time
from pytest_textual_snapshot import SVGImageExtension
from textual.pilot import Pilot

from tuigpt.ui.app import TuiGptApp
from tuigpt.ui.widgets.events_log import EventsLog
from tuigpt.ui.widgets.gpu import GpuPane
from tuigpt.ui.widgets.loss import LossChart
from tuigpt.ui.widgets.status import StatusBar

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.fixture(autouse=True)
def _pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """UTC wall clock, and the SVGs kept in tests/snapshots/ rather than __snapshots__/."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(SVGImageExtension, "dirname", classmethod(lambda cls, *, test_location: str(SNAPSHOTS)))
    yield
    monkeypatch.undo()
    time.tzset()


def fake_app() -> TuiGptApp:
    controller = FakeController(demo_script())
    end = script_end_time(controller.script)
    return TuiGptApp(controller, config_path="configs/shakespeare_char.py", clock=lambda: end + 5.0)


async def drawn(pilot: Pilot) -> None:
    """Wait until the whole scripted run is on screen (never a fixed moment: a loaded machine is slower)."""
    app = pilot.app
    await until(pilot, lambda: "data loader is slower" in "\n".join(app.query_one(EventsLog).messages),
                what="the script's last notice in the events log")
    await until(pilot, lambda: "NVIDIA" in str(app.query_one(GpuPane).render()), what="the GPU reading")
    app.redraw()  # what the redraw timer would do
    await until(pilot, lambda: "iter 1,199/5,000" in str(app.query_one(StatusBar)._iter_label.render()),
                what="the header's iteration")
    chart = app.query_one(LossChart)
    await until(pilot, lambda: chart.data is not None and chart.drawn_range == (0, 1199), what="the chart")
    await pilot.pause()


def test_main_screen_120x40(snap_compare) -> None:  # noqa: ANN001 - pytest-textual-snapshot fixture
    assert snap_compare(fake_app(), terminal_size=(120, 40), run_before=drawn)


def test_main_screen_80x24(snap_compare) -> None:  # noqa: ANN001
    assert snap_compare(fake_app(), terminal_size=(80, 24), run_before=drawn)


def test_quit_dialog_80x24(snap_compare) -> None:  # noqa: ANN001
    async def quit_dialog(pilot: Pilot) -> None:
        await drawn(pilot)
        await pilot.press("q")
        await until(pilot, lambda: type(pilot.app.screen).__name__ == "QuitDialog", what="the quit dialog")
        await pilot.pause()

    assert snap_compare(fake_app(), terminal_size=(80, 24), run_before=quit_dialog)
