"""When a run must end: ``time_budget`` (``--time 8h``) or ``deadline`` (``--until 07:00``), parsed, and the
clock each one counts on.

A **deadline** is the wall clock: the run ends by then whatever happens, so a pause eats into it. A **time
budget** counts the run's own time from the moment it was started (set-up, evals and checkpoints included), and
that clock stops while the run is paused, so a pause moves the end later by as long as it lasted.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass

from tuigpt.run.errors import UserError
from tuigpt.run.fmt import shown

MAX_BUDGET_SECONDS = 366 * 86400  # a year: anything longer is a typo (8000h for 800h)
MAX_DEADLINE_AHEAD = 366 * 86400
BUDGET_EXAMPLES = "8h, 90m, 45s, 1h30m or 1.5h"
DEADLINE_EXAMPLES = "07:00 (the next 7 am), 23:30:15, or a date and time such as 2026-11-24T07:00"
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def parse_duration(text: str, key: str = "time_budget") -> float:
    """Seconds of ``8h``, ``90m``, ``45s``, ``1h30m``, ``1.5h``, ``2d``; UserError naming the fix otherwise."""
    compact = text.strip().lower().replace(" ", "")
    if not compact:
        raise UserError(f"{_what(key)} is empty: give a duration such as {BUDGET_EXAMPLES}")
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        hint = " (add a unit: s, m, h or d)" if re.fullmatch(r"\d+(\.\d+)?", compact) else ""
        raise UserError(f"{_what(key)}{_eq(key)}{shown(text, 40)} is not a duration{hint}: write {BUDGET_EXAMPLES}")
    units = [u for _, u in parts]
    if len(set(units)) != len(units):
        raise UserError(f"{_what(key)}{_eq(key)}{shown(text, 40)} names a unit twice: write {BUDGET_EXAMPLES}")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{_what(key)}{_eq(key)}{shown(text, 40)} is no time at all: give a positive duration such as 10m")
    if seconds > MAX_BUDGET_SECONDS:
        raise UserError(f"{_what(key)}{_eq(key)}{shown(text, 40)} is longer than a year: give at most 366d")
    return seconds


def check_deadline_syntax(text: str) -> None:
    """UserError unless ``text`` reads as a clock time or an ISO date and time (whether it is in the past is
    only known when the run starts: :func:`resolve_deadline`)."""
    _parse_deadline(text, _dt.datetime(2000, 1, 1))


def resolve_deadline(text: str, now: float) -> float:
    """The wall time (epoch seconds) ``text`` means at ``now``: ``HH:MM[:SS]`` is its next occurrence (tomorrow
    when that time has passed today), an ISO date and time is itself; UserError when it is in the past or more
    than a year ahead."""
    local_now = _dt.datetime.fromtimestamp(now)
    when = _parse_deadline(text, local_now)
    at = when.timestamp()
    if at <= now:
        raise UserError(f"deadline {shown(text, 40)} is in the past ({when:%Y-%m-%d %H:%M:%S}): give a later time, "
                        f"e.g. --until {(local_now + _dt.timedelta(hours=8)):%H:%M}")
    if at - now > MAX_DEADLINE_AHEAD:
        raise UserError(f"deadline {shown(text, 40)} is more than a year away: give a nearer date")
    return at


def _parse_deadline(text: str, local_now: _dt.datetime) -> _dt.datetime:
    stripped = text.strip()
    m = _CLOCK.match(stripped)
    if m:
        hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise UserError(f"deadline {shown(text, 40)} is not a time of day: write {DEADLINE_EXAMPLES}")
        when = local_now.replace(hour=hour, minute=minute, second=second, microsecond=0)
        if when <= local_now:
            when += _dt.timedelta(days=1)
        return when
    try:
        when = _dt.datetime.fromisoformat(stripped)
    except ValueError:
        raise UserError(f"deadline {shown(text, 40)} is neither a time of day nor an ISO date and time: write "
                        f"{DEADLINE_EXAMPLES}") from None
    if "T" not in stripped.upper() and " " not in stripped:
        raise UserError(f"deadline {shown(text, 40)} has a date but no time: write e.g. {stripped}T07:00")
    return when


def _eq(key: str) -> str:
    return " " if key.startswith("--") else "="


def _what(key: str) -> str:
    return key if key.startswith("--") else f"config key {key}"


@dataclass(frozen=True)
class RunEnd:
    """When a run must end: ``until`` (epoch seconds) for a deadline, ``budget`` seconds of run time for a
    time budget (``started``: the wall time its clock started; pauses move its end later)."""

    kind: str  # "deadline" or "budget"
    until: float | None = None
    budget: float | None = None
    started: float = 0.0
    text: str = ""  # as the user wrote it

    @property
    def is_budget(self) -> bool:
        return self.kind == "budget"

    def end_wall(self, paused_seconds: float) -> float:
        """The wall time the run must be over by, after ``paused_seconds`` of pauses so far."""
        if self.until is not None:
            return self.until
        assert self.budget is not None
        return self.started + self.budget + paused_seconds

    def describe(self) -> str:
        """How the end counts, for the run's first line."""
        if self.is_budget:
            return f"time budget {self.text} (run time from the start: a pause extends the end)"
        return f"deadline {self.text} (the wall clock: a pause eats into it)"


def run_end(time_budget: str | None, deadline: str | None, started: float, now: float) -> RunEnd | None:
    """The end a config asks for (None: none, max_iters ends the run); UserError for a deadline in the past."""
    if time_budget is not None:
        return RunEnd("budget", budget=parse_duration(time_budget), started=started, text=time_budget.strip())
    if deadline is not None:
        return RunEnd("deadline", until=resolve_deadline(deadline, now), started=started, text=deadline.strip())
    return None
