"""time_budget and deadline: what a user may write, and the one-line refusals."""

from __future__ import annotations

import datetime as dt

import pytest

from tuigpt.run.config import TrainConfig
from tuigpt.run.configfile import load_config
from tuigpt.run.deadline import parse_duration, resolve_deadline, run_end
from tuigpt.run.errors import UserError


@pytest.mark.parametrize("text, seconds", [("8h", 28800), ("90m", 5400), ("45s", 45), ("1h30m", 5400),
                                           ("1.5h", 5400), ("2d", 172800), (" 10m ", 600), ("1h 5m 3s", 3903)])
def test_durations_read_as_a_user_writes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, why", [("8", "add a unit"), ("8x", "not a duration"), ("", "empty"),
                                       ("0s", "no time at all"), ("1h1h", "names a unit twice"),
                                       ("400d", "longer than a year"), ("h", "not a duration"), ("-5m", "not a duration")])
def test_a_bad_duration_is_one_line_that_names_the_fix(text: str, why: str) -> None:
    with pytest.raises(UserError, match=why) as info:
        parse_duration(text, "--time")
    assert "\n" not in str(info.value) and str(info.value).startswith(f"--time {text!r}" if text else "--time")


def _at(hour: int, minute: int) -> float:
    return dt.datetime(2026, 11, 23, hour, minute).timestamp()


def test_a_clock_time_is_its_next_occurrence() -> None:
    evening = _at(18, 0)
    assert resolve_deadline("07:00", evening) == dt.datetime(2026, 11, 24, 7, 0).timestamp()  # tomorrow
    assert resolve_deadline("23:30:15", evening) == dt.datetime(2026, 11, 23, 23, 30, 15).timestamp()  # today
    assert resolve_deadline("7:00", _at(6, 0)) == _at(7, 0)


def test_an_iso_date_and_time_is_itself_and_the_past_is_refused() -> None:
    now = _at(18, 0)
    assert resolve_deadline("2026-11-24T07:00", now) == dt.datetime(2026, 11, 24, 7, 0).timestamp()
    assert resolve_deadline("2026-11-24 07:00", now) == dt.datetime(2026, 11, 24, 7, 0).timestamp()
    with pytest.raises(UserError, match="in the past"):
        resolve_deadline("2026-11-23T07:00", now)
    with pytest.raises(UserError, match="more than a year"):
        resolve_deadline("2028-01-01T07:00", now)


@pytest.mark.parametrize("text", ["25:00", "07:61", "tomorrow", "7am", "2026-11-24", "07:00:99"])
def test_a_deadline_that_is_not_a_time_is_refused(text: str) -> None:
    with pytest.raises(UserError, match="deadline"):
        resolve_deadline(text, _at(18, 0))


def test_a_budget_counts_from_the_start_and_moves_with_pauses_a_deadline_does_not() -> None:
    budget = run_end("10m", None, started=1000.0, now=1005.0)
    assert budget is not None and budget.end_wall(0) == 1600.0 and budget.end_wall(30) == 1630.0
    deadline = run_end(None, "2026-11-24T07:00", started=_at(18, 0), now=_at(18, 0))
    assert deadline is not None and deadline.end_wall(0) == deadline.end_wall(3600)
    assert run_end(None, None, 0, 0) is None


def test_config_keys_make_max_iters_a_cap_or_leave_it_to_the_plan(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("time_budget: 10m\n")
    assert load_config(path).max_iters is None  # derived
    path.write_text("time_budget: 10m\nmax_iters: 5000\n")
    assert load_config(path).max_iters == 5000  # a cap
    assert load_config(path, {"time_budget": ""}).max_iters == 5000  # no end: max_iters as before
    path.write_text("deadline: '07:00'\n")
    assert load_config(path).max_iters is None


@pytest.mark.parametrize("values, why", [
    (dict(time_budget="10m", deadline="07:00"), "both set"),
    (dict(time_budget="10"), "add a unit"),
    (dict(deadline="noon"), "neither a time of day"),
    (dict(max_iters=None), "max_iters is empty"),
])
def test_bad_ends_in_a_config_are_refused(values: dict, why: str) -> None:
    with pytest.raises(UserError, match=why):
        TrainConfig(**values)
