"""What the screen looks like at 80x24, 120x40 and 160x50 (issue 27, items 14-16): the events log re-wraps to
its pane and follows the newest line after the reader scrolled, the chart keeps its room, its legend and its
ticks, the Health and Speed panes say what their bars mean, the Cluster pane fits its column."""

from __future__ import annotations

import dataclasses
import math

from rich.console import Console
from support import until
from support.fake_run import T0, FakeController, demo_script
from test_ui_app import drive, settle, text_of
from test_ui_cluster import cluster_stats
from test_ui_health import drive as health_drive
from test_ui_health import health_script
from textual.content import Content
from textual.pilot import Pilot

from tuigpt.run.events import Notice, RunStarted
from tuigpt.run.model import RunModel
from tuigpt.ui import braille
from tuigpt.ui.app import TuiGptApp
from tuigpt.ui.widgets.cluster import ClusterPane
from tuigpt.ui.widgets.events_log import EventsLog
from tuigpt.ui.widgets.health import render_health
from tuigpt.ui.widgets.loss import LossChart, LossData, build_plot
from tuigpt.ui.widgets.speed import SpeedPane

LONG = "the learning rate will still be 1.00e-03 at the last iteration (600): " + "word " * 40


def rows_of(log: EventsLog, needle: str) -> int:
    """How many rows of the log the line holding ``needle`` takes (it wraps onto the rows after it)."""
    texts = [strip.text.rstrip() for strip in log.lines]
    first = next(k for k, t in enumerate(texts) if needle in t)
    end = next((k for k in range(first + 1, len(texts)) if texts[k][:2].isdigit() and texts[k][2] == ":"), len(texts))
    return end - first


def test_events_wrap_to_the_pane_width_at_start_and_again_after_every_resize() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        log = app.query_one(EventsLog)
        c.emit(Notice(level="warning", message=LONG, time=T0), Notice(level="info", message="short", time=T0))
        await settle(pilot)
        for size in [(160, 50), (120, 40), (80, 24), (160, 50)]:
            await pilot.resize_terminal(*size)
            await settle(pilot)
            await pilot.pause()
            width = log.scrollable_content_region.width
            assert max(strip.cell_length for strip in log.lines) <= width, size  # nothing beyond the pane's edge
            assert log.virtual_size.width <= width and log.max_scroll_x == 0, size  # no sideways scrolling
            wanted = math.ceil(len(f"00:00:00 {LONG}".rstrip()) / width)
            assert wanted <= rows_of(log, "learning rate will") <= wanted + 1, (size, width)  # wrapped at this width

    # started at 160x50: the first lines arrive while the screen is still laid out at its compact size
    drive(body, FakeController([Notice(level="info", message=LONG, time=T0)]), size=(160, 50))


def test_end_brings_back_the_newest_line_and_new_lines_show_after_home_pgdn_end() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        log = app.query_one(EventsLog)
        c.emit(*(Notice(level="info", message=f"line {k}", time=T0) for k in range(60)))
        await settle(pilot)
        await pilot.press("n")  # focus the events pane
        assert app.focused is log
        for key in ("home", "pagedown", "end"):
            await pilot.press(key)
            c.emit(Notice(level="info", message=f"after {key}", time=T0))  # a line arrives while it scrolls
            await settle(pilot)
        for k in range(3):
            c.emit(Notice(level="info", message=f"newest {k}", time=T0))
            await settle(pilot)
            shown = [log.render_line(y).text for y in range(log.size.height)]
            assert any(f"newest {k}" in row for row in shown), shown

    drive(body)


def test_the_events_log_leaves_the_chart_most_of_the_left_column() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        for size, most in [((120, 40), 0.28), ((160, 50), 0.28)]:
            await pilot.resize_terminal(*size)
            await settle(pilot)
            body_height = app.query_one("#left").size.height
            events = app.query_one(EventsLog).outer_size.height
            assert 7 <= events <= most * body_height, (size, events, body_height)

    drive(body)


def test_screenshots_keep_the_background_a_line_carries_over_from_the_line_before() -> None:
    """docs/capture_tmux.py: tmux capture-pane -e writes only changes, across line ends too (this pair is what it
    wrote for two chart rows): the chart's cells before the bold EMA cell are on the pane's background, not black."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "docs" / "capture_tmux.py"
    spec = importlib.util.spec_from_file_location("capture_tmux", path)
    assert spec is not None and spec.loader is not None
    capture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capture)
    pane = ["\x1b[38;5;32m│\x1b[38;5;253m\x1b[48;5;233m4.0\x1b[38;5;240m┤\x1b[38;5;80m⣿⣿",
            "\x1b[38;5;32m│\x1b[38;5;253m   \x1b[38;5;240m│\x1b[38;5;80m⣿⣿\x1b[1m\x1b[38;5;231m⠈⢧"
            "\x1b[0m\x1b[38;5;253m\x1b[48;5;233m   "]
    rows = capture.decode(pane, 3)
    assert len(rows) == 3 and rows[2].plain == ""
    second, console = rows[1], Console()
    for k in range(len(second.plain)):
        style = second.get_style_at_offset(console, k)
        assert style.bgcolor is not None and style.bgcolor.number == 233, (k, second.plain[k], style)


def test_a_log_y_axis_over_a_narrow_range_has_several_ticks() -> None:
    # a run late in training: the loss between 1.6 and 2.3, where the log axis's round values held only "2"
    xs = list(range(400))
    ys = [1.6 + 0.7 * math.exp(-i / 120) + 0.02 * math.sin(i) for i in xs]
    for height in (10, 22):
        plot = build_plot(LossData(raw=(xs, ys), log_y=True), 76, height)
        labels = [label for _, label in plot.y_ticks]
        assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
        assert all(1.5 <= float(label) <= 2.4 for label in labels), labels
        assert len({len(label) for label in labels}) == 1, labels  # 1.8 2.0 2.2, not 1.8 2 2.2
    wide = [label for _, label in build_plot(LossData(raw=([0, 1, 2], [0.05, 1.0, 9.0]), log_y=True), 76, 22).y_ticks]
    assert not any("." in label and label.endswith("0") for label in wide), wide  # over decades: 0.1 1.5 4, not 0.10


def test_the_chart_legend_is_never_cut() -> None:
    script = health_script()  # a target loss: the projection joins the legend
    assert isinstance(script[0], RunStarted)
    script[0] = dataclasses.replace(script[0], cooldown_from=4_000)  # and a WSD cooldown

    for size in [(80, 24), (100, 32), (120, 40), (160, 50)]:
        async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
            chart = app.query_one(LossChart)
            await until(pilot, lambda: "projection" in chart.legend.plain or "target" in chart.legend.plain,
                        what="the projection's legend entry")
            app.redraw()
            await pilot.pause()
            legend = chart.legend.plain
            assert "best val" in legend and "cooldown @4,000" in legend
            entries = [e for e in legend.replace("  ", " ").split(" ") if e]
            subtitle = Content.from_markup(str(chart.border_subtitle)).plain
            if subtitle:  # in the border: the whole legend, with room to spare
                assert subtitle == legend and len(subtitle) <= chart.outer_size.width - 4, size
            else:  # on the chart's last lines, every word whole
                rows = [chart.render_line(y).text for y in range(chart.size.height)]
                shown = " ".join(rows[-3:])
                assert all(e in shown for e in entries), (size, rows[-3:])
                assert any("┤" in row for row in rows), size  # and the chart itself still there

        health_drive(body, script, size=size)


def test_the_health_pane_fills_its_place_and_its_sparklines_say_their_scale() -> None:
    model = RunModel()
    for event in health_script(600):
        model.record(event)
    view = model.snapshot().health
    for width, height in [(76, 25), (116, 35), (76, 14)]:  # the chart's place at 120x40 and 160x50; a short one
        lines = str(render_health(view, width, height)).splitlines()
        assert 0.85 * height <= len(lines) <= height, (width, height, len(lines))  # was 11 of 25 rows at 120x40
        assert all(len(line) <= width for line in lines)
        grad = next(k for k, line in enumerate(lines) if line.startswith("grad norm"))
        clipped = next(k for k, line in enumerate(lines) if line.startswith("clipped"))
        block = "\n".join(lines[grad:clipped])
        assert clipped - grad >= 2, lines  # the sparkline is several rows tall
        # its scale beside it: the largest and smallest gradient norm drawn (3.61 at the spike, 0.6 at the end)
        assert ("max 3.61" in block and "min 0.6" in block) or "0.6–3.61" in block, block


def test_the_speed_sparkline_has_a_scale() -> None:
    async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
        speed = app.query_one(SpeedPane)
        await until(pilot, lambda: speed.progress is not None and speed.progress.ms_recent, what="iterations")
        ms = [v for v in speed.progress.ms_recent if v is not None]
        shown = text_of(speed)
        assert f"max {max(ms):,.0f}" in shown and f"min {min(ms):,.0f}" in shown, shown
        assert "ms/iter" in shown and "evals" in shown  # every line of the pane on screen, the last included
        assert speed.size.height >= len(shown.splitlines()), (speed.size, shown)

    drive(body)


def test_the_cluster_pane_fits_120x40_every_rank_on_one_line_nothing_cut_no_outer_scrollbar() -> None:
    for size in [(80, 24), (120, 40), (160, 50)]:
        async def body(app: TuiGptApp, pilot: Pilot, c: FakeController) -> None:
            c.emit(cluster_stats(straggler=1))
            await settle(pilot)
            if app.compact:  # its tab
                app._select_pane("cluster")
                await settle(pilot)
            await pilot.pause()
            cluster = app.query_one(ClusterPane)
            rows = [cluster.render_line(y).text for y in range(cluster.size.height)]
            for host, numbers in (("laptop-a", "410.0 3.1 280.0 95.0"), ("laptop-c", "409.0 2.9 285.0 90.0")):
                row = next(r for r in rows if host in r)
                assert " ".join(row.split()[2:]) == numbers, (size, row)  # the comm column on the rank's line
            shown = "\n".join(rows)
            assert "straggler: rank 1" in shown and "slow steps do not move" in shown, (size, rows)  # the end too
            if app.compact:
                return
            right = app.query_one("#right")
            assert right.max_scroll_y == 0 and not right.show_vertical_scrollbar, size  # no bar outside the panes
            for pane in ("#speed", "#mfu", "#cpu", "#gpu", "#samples"):
                region = app.query_one(pane).region
                assert region.height >= 3 and right.region.contains_region(region), (size, pane, region)

        drive(body, FakeController(demo_script(iters=300)), size=size)


def _dots(char: str) -> int:
    return bin(ord(char) - braille.BRAILLE_BASE).count("1") if 0x2800 <= ord(char) <= 0x28FF else 0


def test_the_ema_line_leaves_no_holes_in_the_filled_area() -> None:
    """A line through the area keeps one dot clear of it; the area's dots further away stay in the cells it
    crosses. Before, those cells held the line alone: a dark stripe along the EMA, and on a short chart (80x24)
    where the EMA runs in the bottom row the whole fill vanished under it."""
    xs = [float(x) for x in range(101)]
    for line_y, height in ((0.35, 3), (0.05, 3), (0.5, 5)):
        plot = braille.Plot((0.0, 100.0), (0.0, 1.0), [
            braille.Layer("area", xs, [0.9] * len(xs), "cyan"),
            braille.Layer("line", xs, [line_y] * len(xs), "white")])
        rows = braille.render(plot, 40, height + 1)[:height]
        cells = ["".join(segment.text for segment in row)[2:] for row in rows]  # after the "y label" and axis
        line_row = round((1 - line_y) * (4 * height - 1)) // 4  # the cell row the line's dots fall in
        # the line's cells: the line (2 dots, one a dot column) and the area's dots 2 rows or more from it
        assert _dots(cells[line_row][0]) > 2, (line_y, cells)
        assert all(set(row) == {"⣿"} for k, row in enumerate(cells) if k > line_row), cells  # full below
