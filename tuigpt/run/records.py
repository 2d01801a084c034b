"""The one codec: events ↔ metrics.jsonl records (also what the control socket streams), and
commands ↔ control-socket messages.

A record is a JSON object with a ``type`` (the event's kind below) and the event's fields; a message is
``{"cmd": WIRE_NAME, ...arguments}``. Both travel as one compact JSON object a line.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Callable

from tuigpt.run import commands as cmds
from tuigpt.run.commands import Command
from tuigpt.run.events import (
    CheckpointWritten,
    ClusterStats,
    Diverging,
    EvalIntervalChanged,
    EvalProgress,
    EvalResult,
    Event,
    IterationStats,
    NanDetected,
    Notice,
    PlanUpdated,
    Rewound,
    RunFailed,
    RunFinished,
    RunStarted,
    RunState,
    SampleGenerated,
    Stalled,
    StateChanged,
    TelemetrySnapshot,
)
from tuigpt.run.readings import reading_from_record

KINDS: dict[str, type[Event]] = {
    "start": RunStarted, "iter": IterationStats, "eval": EvalResult, "checkpoint": CheckpointWritten,
    "sample": SampleGenerated, "notice": Notice, "state": StateChanged, "eval_interval": EvalIntervalChanged,
    "finish": RunFinished, "failed": RunFailed, "telemetry": TelemetrySnapshot, "cluster": ClusterStats,
    "nan": NanDetected, "rewind": Rewound, "stall": Stalled, "diverging": Diverging,
    "eval_progress": EvalProgress, "plan": PlanUpdated,
}
KIND_OF: dict[type[Event], str] = {cls: kind for kind, cls in KINDS.items()}
_FIELDS: dict[type[Event], frozenset[str]] = {cls: frozenset(f.name for f in dataclasses.fields(cls))
                                              for cls in KINDS.values()}


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def event_record(event: Event) -> dict[str, Any] | None:
    """The record for an event, or None for events that are not kept (HistoryLoaded)."""
    kind = KIND_OF.get(type(event))
    if kind is None:
        return None
    record: dict[str, Any] = {"type": kind}
    record.update(_jsonable(event))
    return record


def event_from_record(record: dict[str, Any]) -> Event | None:
    """The event a record was made from; None when the record is not one (unknown type, or a field of the wrong
    type: a file is foreign input, and one bad line must not reach a chart, a projection or a table)."""
    cls = KINDS.get(record.get("type"))  # type: ignore[arg-type]
    if cls is None:
        return None
    values = {k: v for k, v in record.items() if k in _FIELDS[cls]}
    checks = _CHECKS.get(cls)
    if checks is None:
        checks = _CHECKS[cls] = _field_checks(cls)
    if not all(check(values[name]) for name, check in checks.items() if name in values):
        return None
    try:
        if cls is StateChanged:
            values["state"] = RunState(values["state"])
        elif cls is TelemetrySnapshot:
            values["data"] = reading_from_record(values.get("kind"), values.get("data"))
            if values["data"] is None:
                return None
        return cls(**values)
    except (TypeError, ValueError, KeyError):
        return None


_CHECKS: dict[type[Event], dict[str, Callable[[Any], bool]]] = {}


def _field_checks(cls: type[Event]) -> dict[str, Callable[[Any], bool]]:
    """A type check per field of ``cls``, from its annotations (fields of other types are not checked here)."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        check = _check_for(hint)
        if check is not None:
            out[name] = check
    return out


def _check_for(hint: Any) -> Callable[[Any], bool] | None:
    if hint is bool:
        return lambda v: isinstance(v, bool)
    if hint is int:
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if hint is float:  # a NaN or Inf was written as null (JSON has neither): read back as None
        return lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
    if hint is str:
        return lambda v: isinstance(v, str)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        inner = _check_for(next(a for a in args if a is not type(None)))
        return None if inner is None else (lambda v: v is None or inner(v))
    if origin in (list, dict):
        return lambda v: isinstance(v, origin)
    return None


def dumps(obj: dict[str, Any]) -> bytes:
    """One JSON line (no NaN: a reader in any language can parse it)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def loads(line: bytes | str) -> dict[str, Any] | None:
    """One line as a JSON object; None for garbage, JSON that is not an object, or absurd nesting."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------- commands on the control socket


def command_message(command: Command) -> dict[str, Any]:
    """The control-socket message for a command."""
    return {"cmd": cmds.spec_of(command).wire, **cmds.arguments(command)}


def command_from_message(message: dict[str, Any]) -> Command:
    """The command a message asks for; ValueError with a reason the client is told otherwise."""
    cmd = message.get("cmd")
    spec = cmds.BY_WIRE.get(cmd) if isinstance(cmd, str) else None
    if spec is None:
        shown = cmd[:40] if isinstance(cmd, str) else type(cmd).__name__
        raise ValueError(f"unknown command {shown!r}: expected one of {', '.join(cmds.BY_WIRE)}")
    try:
        return cmds.build(spec, message)
    except ValueError as exc:
        raise ValueError(f"{spec.wire}: {exc}") from None
