"""An adversarial pass: generated bad input across config files, overrides, data files, checkpoints and control-socket
messages, and the three things every case must keep:

  - no exit 1 (an unexpected exception, or a traceback) — bad input is exit 2 with one line, or a clean run;
  - no hang over 30 s;
  - no changed file in a run directory the case should not touch: every case runs next to a finished run
    ("victim") that only a valid resume may change, and a case that exits 2 leaves no new run directory.

The CLI runs in-process (``tuigpt.cli.main.main``); socket messages go to an in-process ControlServer whose commands
land on a real CommandGate. The cases themselves are generated in :mod:`support.adversarial_cases`. Used by tests/unit/cli/test_adversarial.py
(a sample) and benchmarks/adversarial_pass.py (the full pass, with counts).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import random
import shutil
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from conftest import TINY
from support import corpus

HANG_SECONDS = 30
BASE = dict(TINY, max_iters=0, eval_iters=1, data_path=str(corpus.shakespeare_path()), run_name="fresh")  # a valid case: 1 eval


@dataclass
class Case:
    category: str
    name: str
    action: Callable[[Path], int]  # runs the case in a workspace, returns its exit code
    may_change_victim: bool = False  # a valid resume of the victim trains it
    prepare: Callable[[Path], None] | None = None  # sets the workspace up (a damaged last.pt) before the snapshot


@dataclass
class Result:
    case: Case
    code: int | None  # None: raised (exit 1) or hung
    seconds: float
    problem: str | None = None  # why the case broke an invariant


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    def count(self, what: str) -> int:
        return sum(1 for r in self.results if r.problem is not None and r.problem.startswith(what))

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.problem is not None]

    def summary(self) -> str:
        by_cat: dict[str, int] = {}
        codes: dict[int | None, int] = {}
        for r in self.results:
            by_cat[r.case.category] = by_cat.get(r.case.category, 0) + 1
            codes[r.code] = codes.get(r.code, 0) + 1
        cats = ", ".join(f"{k} {v}" for k, v in by_cat.items())
        exits = ", ".join(f"exit {k}: {v}" for k, v in sorted(codes.items(), key=lambda kv: str(kv[0])))
        slowest = max((r.seconds for r in self.results), default=0.0)
        return (f"{len(self.results)} cases ({cats}); {exits}; exit-1: {self.count('exit 1')}, hangs over "
                f"{HANG_SECONDS} s: {self.count('hang')}, changed run directories: {self.count('changed')}, other "
                f"broken invariants: {len(self.failures) - self.count('exit 1') - self.count('hang') - self.count('changed')}; "
                f"slowest case {slowest:.1f} s")


class _Hang(BaseException):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang()


# ---------------------------------------------------------------- workspace


def make_victim(root: Path) -> Path:
    """A finished tiny run (last.pt, best.pt, metrics.jsonl) to copy next to every case."""
    from tuigpt.cli import main as cli

    root.mkdir(parents=True, exist_ok=True)
    config = root / "victim.yaml"
    config.write_text(yaml.safe_dump({**BASE, "run_name": "victim", "out_dir": str(root / "runs"), "max_iters": 3,
                                      "eval_interval": 3}))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main([str(config), "--headless"]) == 0
    return root / "runs" / "victim"


def _tree(directory: Path) -> dict[str, str]:
    out = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(directory))] = hashlib.sha1(p.read_bytes()).hexdigest()
        elif not p.is_dir():
            out[str(p.relative_to(directory))] = "special"
    return out


def run_case(case: Case, pristine: Path, work: Path) -> Result:
    """One case in a fresh workspace: ``work/runs/victim`` copied from ``pristine`` (removed again after)."""
    victim = work / "runs" / "victim"
    shutil.copytree(pristine, victim)
    if case.prepare is not None:
        case.prepare(work)
    before = _tree(victim)
    from tuigpt.cli import main as cli  # noqa: F401 (imported before the alarm: a first import is not a hang)

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    t0 = time.monotonic()
    out, err = io.StringIO(), io.StringIO()
    code: int | None = None
    problem: str | None = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = case.action(work)
    except _Hang:
        problem = f"hang: no exit within {HANG_SECONDS} s"
    except SystemExit as exc:
        code = int(exc.code or 0)
    except BaseException:
        problem = "exit 1: " + traceback.format_exc(limit=-3)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    seconds = time.monotonic() - t0
    text = out.getvalue() + err.getvalue()
    if problem is None and code not in (0, 2):
        problem = f"exit {code}: {text[-500:]}"
    elif problem is None and "Traceback" in text:
        problem = f"exit 1: a traceback was printed: {text[-500:]}"
    elif problem is None and code == 2:
        errors = [line for line in err.getvalue().splitlines() if line.strip()]
        if len(errors) != 1 or not errors[0].startswith("error: ") or len(errors[0]) > 600:
            problem = f"bad message: exit 2 must print one short 'error:' line, got {err.getvalue()[-400:]!r}"
    if problem is None and not (code == 0 and case.may_change_victim) and _tree(victim) != before:
        problem = "changed: the victim run directory changed"
    if problem is None and code == 2 and (work / "runs" / "fresh").exists():
        problem = "changed: a refused start left a run directory behind"
    if problem is None or not problem.startswith("hang"):
        shutil.rmtree(work, ignore_errors=True)
    return Result(case, code, seconds, problem)


def run_all(cases: list[Case], root: Path, progress: Callable[[Result], None] | None = None) -> Report:
    root.mkdir(parents=True, exist_ok=True)
    pristine = make_victim(root / "pristine")
    report = Report()
    for k, case in enumerate(cases):
        result = run_case(case, pristine, root / f"work{k}")  # its own folder: a hung case cannot disturb the next
        report.results.append(result)
        if progress is not None:
            progress(result)
    return report


# ---------------------------------------------------------------- socket cases


def _socket_messages(rng: random.Random) -> list[bytes]:
    from tuigpt.run import commands as cmds

    wires = [spec.wire for spec in cmds.SPECS] + ["ping", "subscribe", "", "PAUSE", "sample ", "__class__"]
    argvals: list[Any] = [None, -1, 0, 1, 1e-300, 1e300, 2**70, math.pi, "x" * 2000, [], {}, True, "nan"]
    kind = rng.randrange(8)
    if kind == 0:
        msg: Any = {"cmd": rng.choice(wires)}
        for name in ("prompt", "max_new_tokens", "temperature", "top_k", "interval", "save", "junk"):
            if rng.random() < 0.4:
                msg[name] = rng.choice(argvals)
        return [_dumps(msg)]
    if kind == 1:
        return [_dumps({"cmd": rng.choice(argvals)})]
    if kind == 2:
        depth = rng.choice([10, 1000, 20_000, 40_000])
        return [b"[" * depth + b"]" * depth + b"\n", b'{"cmd":' * min(depth, 10_000) + b"1" + b"}" * min(depth, 10_000) + b"\n"]
    if kind == 3:
        return [bytes(rng.randrange(256) for _ in range(rng.choice([1, 50, 500]))) + b"\n"]
    if kind == 4:
        return [b"x" * rng.choice([70_000, 200_000])]  # over the line limit, no newline
    if kind == 5:
        return [b"".join(_dumps({"cmd": rng.choice(wires)}) for _ in range(rng.choice([2, 30, 200])))]
    if kind == 6:
        return [b'{"cmd": "pa', b'use"}\n', b"\n\n  \n"]  # split lines and blank ones
    return [_dumps(rng.choice([[], 1, "s", None, {"cmd": None}, {"CMD": "stop"}, {"cmd": "stop", "save": 0}]))]


def _dumps(obj: Any) -> bytes:
    import json

    try:
        return json.dumps(obj).encode() + b"\n"
    except ValueError:  # NaN and friends: json.dumps writes them; keep them (a client may send anything)
        return (repr(obj) + "\n").encode()


class SocketHarness:
    """An in-process ControlServer on a real CommandGate; watches for exceptions in its threads."""

    def __init__(self, directory: Path) -> None:
        from tuigpt.control.server import ControlServer
        from tuigpt.engine.gate import CommandGate
        from tuigpt.run.events import EventBus

        directory.mkdir(parents=True, exist_ok=True)
        self.gate = CommandGate()
        self.bus = EventBus()
        self.server = ControlServer(directory, self.gate.send, self.bus.publish, self.bus.subscribe)
        self.path = directory / "control.sock"
        self.errors: list[str] = []
        self._hook = threading.excepthook
        threading.excepthook = lambda args: self.errors.append(f"{args.exc_type.__name__}: {args.exc_value}")
        assert self.server.start()

    def close(self) -> None:
        self.server.stop()
        threading.excepthook = self._hook

    def case(self, parts: list[bytes]) -> Callable[[Path], int]:
        def action(work: Path) -> int:
            from tuigpt.control.wire import LineReader, LineTooLong

            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(HANG_SECONDS / 3)
            s.connect(str(self.path))
            sent_lines = 0
            try:
                for part in parts:
                    s.sendall(part)
                    sent_lines += part.count(b"\n")
            except OSError:
                pass  # the server may hang up on an oversized line while we still send
            replies = 0
            reader = LineReader(s, limit=1 << 20)
            try:
                s.shutdown(socket.SHUT_WR)
                while (lines := reader.read()) is not None:
                    replies += sum(1 for line in lines if b'"type":"reply"' in line)
            except (OSError, LineTooLong):
                pass
            s.close()
            self.gate.exchange()  # what a trainer would take at its boundary: every queued command is valid
            deadline = time.monotonic() + HANG_SECONDS / 3
            while self.server.clients and time.monotonic() < deadline:
                time.sleep(0.01)
            if self.server.clients:
                raise RuntimeError("a connection's slot was never freed")
            if self.errors:
                raise RuntimeError(f"a server thread died: {self.errors}")
            if not _ping(self.path):
                raise RuntimeError("the server stopped answering")
            return 0
        return action


def _ping(path: Path) -> bool:
    from tuigpt.control.wire import ping

    return ping(path.parent, timeout=HANG_SECONDS / 3)


def socket_cases(rng: random.Random, n: int, harness: SocketHarness) -> list[Case]:
    return [Case("socket", f"message {k}", harness.case(_socket_messages(rng))) for k in range(n)]
