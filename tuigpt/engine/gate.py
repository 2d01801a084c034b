"""Commands in at iteration boundaries: from the run's own queue, or rank 0's queue broadcast to every rank.

Front ends call :meth:`CommandGate.send` from any thread. At each iteration boundary the trainer calls
:meth:`CommandGate.exchange` and applies what it returns, in order. With several ranks, rank 0 takes its
queued commands and broadcasts those every rank must apply (their spec's ``word``), with a halt reason
(EndReason NAN or DISK) when rank 0 decided to end the run; the others apply what arrives. Sampling rides along
on rank 0 alone.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from typing import Sequence

from tuigpt.engine.distributed import Cluster
from tuigpt.run import commands as cmds
from tuigpt.run.commands import Command
from tuigpt.run.events import EndReason

MAX_COMMANDS = 8  # per broadcast, a halt included; more queued commands go at the next boundary
MAX_WAITING = 8  # commands of one kind waiting for the next boundary; more are refused (a flood stays bounded)
# a checkpoint or a sample costs seconds: one of each kind waiting is enough (a second asks for the same thing)
WAITING_LIMITS: dict[type[Command], int] = {cmds.CheckpointNow: 1, cmds.Sample: 1}
HALT_WORD = 15  # not a command's word: ends every rank's loop
HALT_REASONS = (EndReason.NAN, EndReason.DISK)
WORDS = 1 + 2 * MAX_COMMANDS  # [count, code, arg, code, arg, ...]


def encode_commands(commands: Sequence[Command], halt: EndReason | None = None) -> list[int]:
    """[count, code, arg, ...] padded to WORDS int64s: the broadcast commands, then the halt if any."""
    words: list[int] = []
    for command in commands:
        spec = cmds.spec_of(command)
        if spec.word is None:
            continue  # rank 0 alone
        words += [spec.word, int(getattr(command, spec.word_arg)) if spec.word_arg else 0]
    if halt is not None:
        words += [HALT_WORD, HALT_REASONS.index(halt)]
    if len(words) > 2 * MAX_COMMANDS:
        raise ValueError(f"{len(words) // 2} commands in one broadcast; at most {MAX_COMMANDS}")
    return [len(words) // 2] + words + [0] * (2 * MAX_COMMANDS - len(words))


def decode_commands(words: Sequence[int]) -> tuple[list[Command], EndReason | None]:
    """The inverse of :func:`encode_commands`: (commands, halt reason or None)."""
    commands: list[Command] = []
    halt = None
    for i in range(int(words[0])):
        code, arg = int(words[1 + 2 * i]), int(words[2 + 2 * i])
        if code == HALT_WORD:
            halt = HALT_REASONS[arg]
            continue
        spec = cmds.BY_WORD[code]
        if spec.word_arg is None:
            commands.append(spec.cls())
        else:
            kind = next(a.kind for a in spec.args if a.name == spec.word_arg)  # int or bool
            commands.append(spec.cls(**{spec.word_arg: kind(arg)}))
    return commands, halt


class CommandGate:
    """The run's command queue and its iteration-boundary exchange."""

    def __init__(self, cluster: Cluster | None = None) -> None:
        self.cluster = cluster
        self._queue: queue.Queue[Command] = queue.Queue()
        self._front: collections.deque[Command] = collections.deque()  # the trainer's own (a trouble pause)
        self._waiting: collections.Counter[type[Command]] = collections.Counter()
        self._lock = threading.Lock()

    def send(self, command: Command) -> str | None:
        """Queue a command for the next boundary (thread-safe, never blocks); when too many of its kind already
        wait, it is refused: the reason, or None when queued."""
        kind = type(command)
        limit = WAITING_LIMITS.get(kind, MAX_WAITING)
        with self._lock:
            if self._waiting[kind] >= limit:
                spec = cmds.spec_of(command)
                return (f"{spec.wire}: {'one is' if limit == 1 else f'{limit} are'} already waiting for the next "
                        f"iteration boundary")
            self._waiting[kind] += 1
        self._queue.put(command)
        return None

    def push_front(self, command: Command) -> None:
        """A command of the trainer itself, applied first at the next boundary (on every rank)."""
        self._front.append(command)

    def exchange(self, wait: float = 0.0, halt: EndReason | None = None) -> tuple[list[Command], EndReason | None]:
        """The commands to apply now on this rank, in order, and a halt reason broadcast by rank 0.

        ``wait``: seconds to wait for a first command when none is queued (while paused); ``halt``: this
        rank's own reason to end the run (rank 0's goes to every rank).
        """
        if self.cluster is None:
            return self._take(wait, limit=None), halt
        local: list[Command] = []
        words = None
        if self.cluster.rank == 0:
            local = self._take(wait, limit=MAX_COMMANDS - 1)  # room for a halt
            words = encode_commands(local, halt)
        commands, broadcast_halt = decode_commands(self.cluster.broadcast_words(words, WORDS))
        return (local if self.cluster.rank == 0 else commands), broadcast_halt or halt

    def _take(self, wait: float, limit: int | None) -> list[Command]:
        """Queued commands, waiting up to ``wait`` seconds for the first; at most ``limit`` broadcast ones
        (sampling does not count: it is not broadcast)."""
        taken: list[Command] = []
        shared = 0
        deadline = time.monotonic() + wait
        while limit is None or shared < limit:
            if self._front:
                command = self._front.popleft()
            else:
                left = deadline - time.monotonic()
                try:
                    command = self._queue.get(timeout=left) if left > 0 and not taken else self._queue.get_nowait()
                except queue.Empty:
                    break
                with self._lock:
                    self._waiting[type(command)] -= 1
            taken.append(command)
            shared += cmds.is_broadcast(command)
        return taken
