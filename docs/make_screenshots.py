"""Export the README's screenshots from the app itself, driven by the deterministic fake run.

    .venv/bin/python docs/make_screenshots.py     # writes docs/screenshots/*.svg

Every event carries a fixed time and the clock is injected, so the SVGs change only when the app does.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from support.fake_run import FakeController, demo_script, script_end_time  # noqa: E402

from tuigpt.ui.app import TuiGptApp  # noqa: E402

OUT = REPO / "docs" / "screenshots"
SHOTS = {"monitor.svg": (120, 40), "monitor-80x24.svg": (80, 24)}


async def shoot(name: str, size: tuple[int, int]) -> Path:
    controller = FakeController(demo_script())
    end = script_end_time(controller.script)
    app = TuiGptApp(controller, config_path="configs/shakespeare_char.py", clock=lambda: end + 5.0)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        app.redraw()  # what the 4 Hz timer would do
        await pilot.pause()
        path = Path(app.save_screenshot(filename=name, path=str(OUT)))
    return path


def main() -> int:
    os.environ["TZ"] = "UTC"
    time.tzset()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, size in SHOTS.items():
        path = asyncio.run(shoot(name, size))
        print(f"wrote {path.relative_to(REPO)} ({size[0]}x{size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
