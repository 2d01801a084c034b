"""The commands front ends send to a run, and one spec row per command.

A command is a small frozen dataclass. Its :class:`CommandSpec` row says everything the rest of tuigpt
needs to carry it: its wire name in control-socket messages, its code in the multi-rank broadcast
(None when rank 0 acts alone), the one integer argument that broadcast carries, the checked range of
each argument, and how it is described to users ("eval interval → 50").

Adding a command: a dataclass, a row in :data:`SPECS`, a case in the trainer's ``_apply``, a key binding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Command:
    """Base class of what front ends ask the trainer to do (applied at the next iteration boundary)."""


@dataclass(frozen=True)
class Pause(Command):
    """Stop after the current iteration until Resume."""


@dataclass(frozen=True)
class Resume(Command):
    """Continue a paused run."""


@dataclass(frozen=True)
class TogglePause(Command):
    """Pause a running run, resume a paused one."""


@dataclass(frozen=True)
class CheckpointNow(Command):
    """Write last.pt at the next iteration boundary. ``reason``: what the checkpoint record says ("command" for
    the `c` key and the socket, which cannot set it; "timer" for checkpoint_every_minutes)."""

    reason: str = "command"


@dataclass(frozen=True)
class Sample(Command):
    """Generate text at the next iteration boundary (None: the config's values; temperature 0: greedy)."""

    prompt: str = "\n"
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_k: int | None = None


@dataclass(frozen=True)
class SetEvalInterval(Command):
    """Evaluate every ``interval`` iterations from now on."""

    interval: int


@dataclass(frozen=True)
class Stop(Command):
    """End the run at the next iteration boundary, writing last.pt when ``save``."""

    save: bool = True


# ---------------------------------------------------------------- the spec table

MAX_PROMPT_CHARS = 1000
MAX_SAMPLE_TOKENS = 4096  # a sample runs on the trainer's thread: bounded so it cannot stall training for long
MAX_TEMPERATURE = 100.0
MAX_TOP_K = 1_000_000
MAX_EVAL_INTERVAL = 1_000_000_000


@dataclass(frozen=True)
class Arg:
    """One argument of a command: its type and the range a run can safely take."""

    name: str
    kind: type  # int, float, str or bool
    lo: float | None = None
    hi: float | None = None
    optional: bool = False  # None (JSON null, or left out) means "the config's value"

    def check(self, value: Any) -> Any:
        """The value, typed; ValueError naming the argument and its range otherwise."""
        if value is None:
            if self.optional:
                return None
            raise ValueError(f"{self.name} is required")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false")
            return value
        if self.kind is str:
            if not isinstance(value, str):
                raise ValueError(f"{self.name} must be text")
            if self.hi is not None and len(value) > self.hi:
                raise ValueError(f"{self.name} is longer than {self.hi:.0f} characters")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{self.name} must be a number {self._range()}")
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{self.name} must be a whole number {self._range()}")
            value = int(value)
        else:
            value = float(value)
        if not math.isfinite(value) or (self.lo is not None and value < self.lo) or \
                (self.hi is not None and value > self.hi):
            raise ValueError(f"{self.name} must be {self._range()}")
        return value

    def _range(self) -> str:
        fmt = (lambda v: f"{v:,.0f}") if self.kind is int else (lambda v: f"{v:g}")
        return f"from {fmt(self.lo)} to {fmt(self.hi)}"


@dataclass(frozen=True)
class CommandSpec:
    cls: type[Command]
    wire: str  # "cmd" of a control-socket message
    word: int | None  # code in the multi-rank command broadcast; None: rank 0 acts alone (sampling)
    word_arg: str | None  # the argument carried in the broadcast as one integer
    args: tuple[Arg, ...]
    describe: Callable[[Any], str]  # for the events log of every front end


def _describe_stop(c: Stop) -> str:
    return "stop and save a checkpoint" if c.save else "stop without saving"


SPECS: tuple[CommandSpec, ...] = (
    CommandSpec(Pause, "pause", 1, None, (), lambda c: "pause"),
    CommandSpec(Resume, "resume", 2, None, (), lambda c: "resume"),
    CommandSpec(TogglePause, "toggle_pause", 3, None, (), lambda c: "pause/resume"),
    CommandSpec(CheckpointNow, "checkpoint", 4, None, (), lambda c: "checkpoint now"),
    CommandSpec(SetEvalInterval, "set_eval_interval", 5, "interval",
                (Arg("interval", int, 1, MAX_EVAL_INTERVAL),), lambda c: f"eval interval → {c.interval:,}"),
    CommandSpec(Stop, "stop", 6, "save", (Arg("save", bool, optional=True),), _describe_stop),
    CommandSpec(Sample, "sample", None, None,
                (Arg("prompt", str, hi=MAX_PROMPT_CHARS, optional=True),
                 Arg("max_new_tokens", int, 1, MAX_SAMPLE_TOKENS, optional=True),
                 Arg("temperature", float, 0.0, MAX_TEMPERATURE, optional=True),
                 Arg("top_k", int, 1, MAX_TOP_K, optional=True)), lambda c: "sample now"),
)
BY_CLASS: dict[type[Command], CommandSpec] = {spec.cls: spec for spec in SPECS}
BY_WIRE: dict[str, CommandSpec] = {spec.wire: spec for spec in SPECS}
BY_WORD: dict[int, CommandSpec] = {spec.word: spec for spec in SPECS if spec.word is not None}


def spec_of(command: Command) -> CommandSpec:
    return BY_CLASS[type(command)]


def describe(command: Command) -> str:
    """What a command does, in the words every events log uses."""
    return spec_of(command).describe(command)


def is_broadcast(command: Command) -> bool:
    """Whether every rank applies the command (everything but sampling, which rank 0 does alone)."""
    return spec_of(command).word is not None


def build(spec: CommandSpec, values: dict[str, Any]) -> Command:
    """A command from raw argument values, each checked against its Arg (ValueError names the problem)."""
    kwargs = {}
    for arg in spec.args:
        value = arg.check(values.get(arg.name))
        if value is not None:
            kwargs[arg.name] = value
    return spec.cls(**kwargs)


def arguments(command: Command) -> dict[str, Any]:
    """A command's arguments by name (what a socket message carries beside its "cmd"): those of its spec row (a
    field a client may not set, CheckpointNow's reason, stays in the process)."""
    return {arg.name: getattr(command, arg.name) for arg in spec_of(command).args}
