"""A WSD run's cooldown start is marked on the loss chart's x axis (▲) and named in the legend."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from support.fake_run import FakeController, demo_script
from test_ui_app import settle

from tuigpt.run.events import RunStarted
from tuigpt.ui import braille
from tuigpt.ui.app import TuiGptApp
from tuigpt.ui.widgets.loss import LossChart, LossData, build_plot


def test_a_mark_sits_on_its_column_of_the_x_axis_and_labels_make_way() -> None:
    data = LossData(raw=([float(i) for i in range(101)], [3.0 - i / 100 for i in range(101)]), x_marks=[50.0])
    rows = braille.render(build_plot(data, 60, 12), 60, 12)
    axis = "".join(segment.text for segment in rows[-1])
    assert axis.count("▲") == 1
    plot_rows = ["".join(segment.text for segment in row) for row in rows[:-1]]
    first_dot = min(row.index(c) for row in plot_rows for c in row if 0x2800 < ord(c) <= 0x28FF)
    last_dot = max(len(row) - 1 - row[::-1].index(c) for row in plot_rows for c in row if 0x2800 < ord(c) <= 0x28FF)
    assert axis.index("▲") == pytest.approx((first_dot + last_dot) / 2, abs=1)  # x = 50 of 0..100: the middle
    assert "50" not in axis  # the tick label under the mark was left out, the others stay
    assert axis.split() == ["0", "20", "40", "▲", "60", "80", "100"]


def _run(cooldown_from: int | None, x_presses: int = 0) -> tuple[str, list[str]]:
    script = demo_script(iters=600)
    assert isinstance(script[0], RunStarted)
    script[0] = dataclasses.replace(script[0], cooldown_from=cooldown_from)
    app = TuiGptApp(FakeController(script))
    seen: dict[str, object] = {}

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            for _ in range(x_presses):
                await pilot.press("x")
                await settle(pilot)
            chart = app.query_one(LossChart)
            seen["legend"] = chart.legend.plain
            # the x axis's line last (the legend's lines, when it does not fit the border, come after it)
            seen["lines"] = [chart.render_line(y).text for y in range(chart.size.height - chart.legend_lines)]

    asyncio.run(main())
    return seen["legend"], seen["lines"]  # type: ignore[return-value]


@pytest.mark.parametrize("x_presses", [0, 1, 2])  # iterations, tokens seen, wall-clock time
def test_the_monitor_marks_where_the_cooldown_starts_on_every_x_axis(x_presses: int) -> None:
    legend, lines = _run(400, x_presses)
    assert "cooldown @400" in legend
    assert "▲" in lines[-1] and all("▲" not in line for line in lines[:-1])


def test_a_cooldown_not_reached_yet_is_named_but_not_marked_and_cosine_runs_show_neither() -> None:
    legend, lines = _run(4_000)  # 600 of 5,000 iterations trained: the cooldown is off the chart
    assert "cooldown @4,000" in legend and "▲" not in lines[-1]
    legend, lines = _run(None)
    assert "cooldown" not in legend and "▲" not in "".join(lines)
