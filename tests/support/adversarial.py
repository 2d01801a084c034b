"""An adversarial pass: generated bad input across config files, overrides, data files, checkpoints and control-socket
messages, and the three things every case must keep:

  - no exit 1 (an unexpected exception, or a traceback) — bad input is exit 2 with one line, or a clean run;
  - no hang over 30 s;
  - no changed file in a run directory the case should not touch: every case runs next to a finished run
    ("victim") that only a valid resume may change, and a case that exits 2 leaves no new run directory.

The CLI runs in-process (``tuigpt.cli.main.main``); socket messages go to an in-process ControlServer whose commands
land on a real CommandGate. Used by tests/unit/cli/test_adversarial.py (a sample) and benchmarks/adversarial_pass.py
(the full pass, with counts).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import math
import os
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

from conftest import SHAKESPEARE, TINY

HANG_SECONDS = 30
BASE = dict(TINY, max_iters=0, eval_iters=1, data_path=str(SHAKESPEARE), run_name="fresh")  # a valid case: 1 eval


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


# ---------------------------------------------------------------- CLI cases


def _cli(args: list[str]) -> int:
    from tuigpt.cli import main as cli

    return cli.main(args)


def _train_case(values: dict[str, Any] | str | bytes, extra: tuple[str, ...] = ()) -> Callable[[Path], int]:
    def action(work: Path) -> int:
        path = work / "case.yaml"
        if isinstance(values, dict):
            path.write_text(yaml.safe_dump({"out_dir": str(work / "runs"), **values}, allow_unicode=True))
        else:
            data = values.encode() if isinstance(values, str) else values
            path.write_bytes(data.replace(b"@OUT@", str(work / "runs").encode()))
        return _cli([str(path), "--headless", *extra])
    return action


def _py_case(text: str) -> Callable[[Path], int]:
    def action(work: Path) -> int:
        path = work / "case.py"
        path.write_text(f"out_dir = {str(work / 'runs' / 'fresh')!r}\nmax_iters = 0\n" + text + "\n")
        return _cli([str(path), "--headless"])
    return action


def _bad_values(rng: random.Random, key: str) -> list[Any]:
    from tuigpt.run.config import FLOAT_RANGES, INT_RANGES

    junk: list[Any] = ["x" * rng.choice([1, 300, 5000]), [1, 2], {"a": 1}, "\0", "日本", True if key not in (
        "bias", "decay_lr", "eval_only", "always_save_checkpoint", "share_with_group") else 7]
    if key in INT_RANGES:
        lo, hi = INT_RANGES[key]
        return junk + [lo - 1, hi + 1, 2**63, -(2**63), 10**30, 1.5, "12", math.nan]
    if key in FLOAT_RANGES:
        lo, hi, _, _ = FLOAT_RANGES[key]
        return junk + [math.nan, math.inf, -math.inf, hi * 10 + 1, lo - 1, 1e308, "fast"]
    return junk + [12345, -1, 1e300, None, "/" + "p" * 300, "a/" * 3000]


def config_cases(rng: random.Random, n: int) -> list[Case]:
    from tuigpt.run.config import TrainConfig

    keys = [f for f in TrainConfig.__dataclass_fields__ if f not in ("run_name", "out_dir")]
    raw = [
        "batch_size: &a [1,2]\nn_layer: *a\n", "a: &a [x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\n",
        "n_layer: " + "[" * 10_000 + "]" * 10_000 + "\n", "seed: " + "9" * 9000 + "\n", "\ufeffmax_iters: 0\n",
        "!!python/object/apply:os.system ['true']\n", "- just\n- a list\n", "42\n", "", "{}", "\t\tbad: indent\n",
        "n_layer: 2\nn_layer: 3\n" * 3, "1: 2\n", "? [a, b]\n: c\n", "max_iters: !!binary aGVsbG8=\n",
        "out_dir: @OUT@\nmax_iters: 0\nbatch_size: 1e400\n", "learning_rate: .nan\n", "date: 2001-12-14\n",
        "batch_size: [" + "1," * 300_000 + "1]\n", "dataset: " + "d" * 900_000 + "\n",
    ]
    cases = [Case("config", f"raw {k}", _train_case(text.encode() if "@OUT@" in text else
                                                  (f"out_dir: @OUT@\n" + text).encode()))
             for k, text in enumerate(raw)]
    cases.append(Case("config", "random bytes", _train_case(bytes(rng.randrange(256) for _ in range(300)))))
    py = ["batch_size = " + "-(" * 300 + "1" + ")" * 300, "dataset = " + " + ".join(['"a"'] * 50_000),
          'dataset = "x" * 10**9', "batch_size = 10**10**10", "batch_size = 1" + " * 99999999999" * 2000,
          'dataset = f"{1:>1000000000}"', "batch_size = foo(" + "1," * 10_000 + ")", "import os\nos.system('true')",
          "exec('1')", "batch_size = 1/0", "n_layer = 2.5", "x: int = 'a'\nbatch_size = x", "def f(): pass",
          "batch_size = 12\nrun_name = 'r'", "out_dir = '../../x'", "dataset = 'a/b'", "batch_size = True + True",
          "max_iters = 1e400", "batch_size = -0.0", "block_size = 2**40", "\x00", "batch_size = [1]*10**9"]
    for k, text in enumerate(py):
        cases.append(Case("config", f"python config {k}", _py_case(text)))
    while len(cases) < n:
        faults = {}
        for _ in range(rng.choice([1, 1, 2, 3])):
            key = rng.choice(keys + ["unknown_key", "Batch_Size", "äöü"])
            faults[key] = rng.choice(_bad_values(rng, key))
        cases.append(Case("config", f"faults {sorted(faults)}", _train_case({**BASE, **faults})))
    return cases[:n]


NASTY = ["", " ", "nan", "inf", "-inf", "1e309", "-1", "0", "1" * 5000, "0x10", "1_000", "true", "null", "[1]", "{}",
         "é", "../../", "a" * 300, "1.5", "-0", "+5", " 3 ", "\0", "2147483648", "18446744073709551617", "1e-320",
         "yes", "~", "cuda:99999999999999999999", "auto\n", "-9223372036854775809"]


def override_cases(rng: random.Random, n: int) -> list[Case]:
    from tuigpt.run.config import TrainConfig

    keys = [f for f in TrainConfig.__dataclass_fields__ if f not in ("out_dir", "run_name", "max_iters")]
    cases = []
    for _ in range(n):
        pairs = [(rng.choice(keys + ["nope", "-", "n-layer"]), rng.choice(NASTY)) for _ in range(rng.choice([1, 2]))]
        # compile=true is a valid request whose CPU compile takes minutes on a loaded machine: not bad input
        pairs = [(k, "false" if k == "compile" and v.strip().lower() in ("true", "yes", "on", "1") else v)
                 for k, v in pairs]
        args = tuple(f"--{k}={v}" for k, v in pairs)
        cases.append(Case("override", " ".join(a[:40] for a in args), _train_case(BASE, args)))
    return cases


def _data_case(make: Callable[[Path], str]) -> Callable[[Path], int]:
    def action(work: Path) -> int:
        data_path = make(work)
        return _train_case({**BASE, "dataset": "text", "data_path": data_path, "block_size": 8})(work)
    return action


def data_cases(rng: random.Random, n: int) -> list[Case]:
    def file_of(content: bytes, name: str = "data.txt") -> Callable[[Path], str]:
        def make(work: Path) -> str:
            (work / name).write_bytes(content)
            return str(work / name)
        return make

    def fifo(work: Path) -> str:
        os.mkfifo(work / "data.txt")
        return str(work / "data.txt")

    def fifo_in_dir(work: Path) -> str:
        (work / "d").mkdir()
        os.mkfifo(work / "d" / "x.txt")
        return str(work / "d")

    def empty_dir(work: Path) -> str:
        (work / "d").mkdir()
        return str(work / "d")

    def loop(work: Path) -> str:
        os.symlink(work / "b.txt", work / "a.txt")
        os.symlink(work / "a.txt", work / "b.txt")
        return str(work / "a.txt")

    fixed: list[tuple[str, Callable[[Path], str]]] = [
        ("fifo", fifo), ("fifo in a dir", fifo_in_dir), ("empty dir", empty_dir), ("symlink loop", loop),
        ("/dev/zero", lambda w: "/dev/zero"), ("/dev/null", lambda w: "/dev/null"),
        ("glob of nothing", lambda w: str(w / "*.nothing")), ("missing", lambda w: str(w / "missing.txt")),
        ("NUL", file_of(b"abc\0def" * 100)), ("latin-1", file_of("café ".encode("latin-1") * 100)),
        ("BOM only", file_of(b"\xef\xbb\xbf")), ("empty", file_of(b"")), ("short", file_of(b"abc")),
        ("whitespace", file_of(b" \n" * 200)), ("one char", file_of(b"a" * 500)),
        ("surrogates", file_of(b"\xed\xa0\x80" * 50)), ("valid text", file_of(b"to be or not to be " * 50)),
    ]
    cases = [Case("data", name, _data_case(make)) for name, make in fixed]
    while len(cases) < n:
        size = rng.choice([1, 10, 100, 2000])
        content = (bytes(rng.randrange(256) for _ in range(size)) if rng.random() < 0.5 else
                   "".join(rng.choice("ab \nλ日\t") for _ in range(size)).encode())
        cases.append(Case("data", f"random {size} bytes", _data_case(file_of(content))))
    return cases[:n]


def _checkpoint_mutations(rng: random.Random) -> list[tuple[str, Callable[[dict[str, Any]], Any]]]:
    import torch

    def first(state: dict[str, Any]) -> str:
        return next(iter(state["model"]))

    def moment(state: dict[str, Any]) -> dict[str, Any]:
        return next(iter(state["optimizer"]["state"].values()))

    values = [None, -1, "x", 1.5, [], {}, True, 10**30, math.nan, torch.zeros(3)]
    muts: list[tuple[str, Callable[[dict[str, Any]], Any]]] = []
    for key in ("iter_num", "config", "model_args", "optimizer", "rng", "world_size", "sampler", "samplers",
                "tokenizer", "model", "format", "best_val_loss", "train_seconds", "scaler"):
        for v in values:
            muts.append((f"{key}={type(v).__name__}", lambda s, k=key, v=v: s.__setitem__(k, copy.deepcopy(v))))
        muts.append((f"drop {key}", lambda s, k=key: s.pop(k, None)))
    muts += [
        ("NaN weight", lambda s: s["model"][first(s)].fill_(math.nan)),
        ("inf weight", lambda s: s["model"][first(s)].fill_(math.inf)),
        ("weight of another shape", lambda s: s["model"].__setitem__(first(s), torch.zeros(7))),
        ("inf exp_avg_sq", lambda s: moment(s)["exp_avg_sq"].fill_(math.inf)),
        ("exp_avg of another shape", lambda s: moment(s).__setitem__("exp_avg", torch.zeros(2))),
        ("negative step", lambda s: moment(s).__setitem__("step", torch.tensor(-3.0))),
        ("n_layer 3", lambda s: s["model_args"].__setitem__("n_layer", 3)),
        ("n_embd huge", lambda s: s["model_args"].__setitem__("n_embd", 10**8)),
        ("vocab 2", lambda s: s["model_args"].__setitem__("vocab_size", 2)),
        ("config batch -1", lambda s: s["config"].__setitem__("batch_size", -1)),
        ("config block 64", lambda s: s["config"].__setitem__("block_size", 64)),
        ("tokenizer short", lambda s: s["tokenizer"].__setitem__("chars", s["tokenizer"]["chars"][:10])),
        ("rng torch wrong", lambda s: s["rng"].__setitem__("torch", torch.zeros(4, dtype=torch.uint8))),
        ("python rng wrong", lambda s: s["rng"].__setitem__("python", [3, [1] * 10, None])),
        ("sampler generator", lambda s: s["sampler"].__setitem__("val_generator", torch.zeros(3, dtype=torch.uint8))),
        ("samplers of junk", lambda s: s.__setitem__("samplers", [1, 2])),
        ("iter at max", lambda s: s.__setitem__("iter_num", 10**12)),
        ("iter 0", lambda s: s.__setitem__("iter_num", 0)),
        ("world_size 8", lambda s: s.__setitem__("world_size", 8)),
    ]
    rng.shuffle(muts)
    return muts


def checkpoint_cases(rng: random.Random, n: int, sample_share: float = 0.25) -> list[Case]:
    """Each case writes a damaged last.pt into the victim and resumes it (or samples from it)."""
    import torch

    from tuigpt.engine.checkpoint import save_checkpoint

    def damage(mutate: Callable[[dict[str, Any]], Any] | None, raw: Callable[[bytes], bytes] | None,
               sample: bool) -> Callable[[Path], None]:
        def prepare(work: Path) -> None:
            last = work / "runs" / "victim" / "last.pt"
            target = work / "copy.pt" if sample else last
            if raw is not None:
                target.write_bytes(raw(last.read_bytes()))
            else:
                state = torch.load(last, weights_only=True)
                mutate(state)  # type: ignore[misc]
                save_checkpoint(state, target)
        return prepare

    def use(sample: bool) -> Callable[[Path], int]:
        def action(work: Path) -> int:
            if sample:
                return _cli(["sample", str(work / "copy.pt"), "--max_new_tokens", "3"])
            return _train_case({**BASE, "run_name": "victim", "max_iters": 4, "eval_interval": 4}, ("--resume",))(work)
        return action

    def flip(data: bytes, k: int) -> bytes:
        b = bytearray(data)
        for _ in range(k):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)

    cases = []
    muts = _checkpoint_mutations(rng)
    raws: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("truncated", lambda d: d[: len(d) // 2]), ("empty", lambda d: b""), ("garbage", lambda d: os.urandom(500)),
        ("zip of junk", lambda d: d[:100] + os.urandom(1000)),
    ]
    k = 0
    while len(cases) < n:
        sample = rng.random() < sample_share
        if k < len(muts):
            name, mutate = muts[k]
            cases.append(Case("checkpoint", ("sample " if sample else "resume ") + name, use(sample),
                              may_change_victim=not sample, prepare=damage(mutate, None, sample)))
        else:
            name, raw = raws[k % len(raws)] if rng.random() < 0.3 else (f"{k % 7 + 1} bit flips",
                                                                         lambda d, j=k % 7 + 1: flip(d, j))
            cases.append(Case("checkpoint", ("sample " if sample else "resume ") + name, use(sample),
                              may_change_victim=not sample, prepare=damage(None, raw, sample)))
        k += 1
    return cases


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


def all_cases(seed: int, scale: float, harness: SocketHarness) -> list[Case]:
    rng = random.Random(seed)
    return (config_cases(rng, round(200 * scale)) + override_cases(rng, round(150 * scale))
            + data_cases(rng, round(60 * scale)) + checkpoint_cases(rng, round(90 * scale))
            + socket_cases(rng, round(200 * scale), harness))
