"""The monitor as a watcher of another process's run."""

from __future__ import annotations

import asyncio

from support.fake_run import FakeController, demo_script
from test_ui_app import settle

from tuigpt.run.commands import Stop
from tuigpt.ui.app import TuiGptApp
from tuigpt.ui.widgets.quit_dialog import QuitDialog


def test_q_in_a_watcher_detaches_without_stopping_the_run() -> None:
    controller = FakeController(demo_script(iters=50))
    app = TuiGptApp(controller, watching=True)

    async def body() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("q")
            await pilot.pause()
            assert isinstance(app.screen, QuitDialog) and app.screen.focused.id == "detach"
            await pilot.press("enter")
            await pilot.pause()

    asyncio.run(body())
    assert app.return_code == 0
    assert not any(isinstance(c, Stop) for c in controller.commands), "detaching never stops the run"
