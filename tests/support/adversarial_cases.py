"""The generated cases of the adversarial pass (the harness and its invariants: :mod:`support.adversarial`)."""

from __future__ import annotations

import copy
import math
import os
import random
from pathlib import Path
from typing import Any, Callable

import yaml
from support.adversarial import BASE, Case, SocketHarness, socket_cases


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

    # True is a valid value of the booleans, and of compile, whose CPU compile takes minutes on a loaded machine (the
    # pass's seed 2 drew it and ran the compile past the 30 s bound): 7 stands for them
    junk: list[Any] = ["x" * rng.choice([1, 300, 5000]), [1, 2], {"a": 1}, "\0", "日本", True if key not in (
        "bias", "decay_lr", "eval_only", "always_save_checkpoint", "share_with_group", "compile") else 7]
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
                                                  ("out_dir: @OUT@\n" + text).encode()))
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
                "tokenizer", "model", "format", "best_val_loss", "train_seconds", "scaler", "last_val_loss",
                "lr_scale", "nan_rewinds", "notices"):
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
        ("last_val_loss NaN (a diverged eval)", lambda s: s.__setitem__("last_val_loss", math.nan)),
        ("best_val_loss inf", lambda s: s.__setitem__("best_val_loss", math.inf)),
        ("param_groups lr text", lambda s: s["optimizer"]["param_groups"][0].__setitem__("lr", "fast")),
        ("param_groups betas short", lambda s: s["optimizer"]["param_groups"][0].__setitem__("betas", [0.9])),
        ("param_groups params of lists", lambda s: s["optimizer"]["param_groups"][0].__setitem__("params", [[0]])),
        ("optimizer state keyed by text", lambda s: s["optimizer"].__setitem__("state", {"a": {}})),
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


def all_cases(seed: int, scale: float, harness: SocketHarness, processes: bool = True) -> list[Case]:
    """Every category; ``processes``: also the cases that start real tuigpt processes (seconds each)."""
    from support.adversarial_files import bomb_cases, foreign_cases, write_target_cases
    from support.adversarial_processes import process_cases

    rng = random.Random(seed)
    cases = (config_cases(rng, round(200 * scale)) + override_cases(rng, round(150 * scale))
             + data_cases(rng, round(60 * scale)) + checkpoint_cases(rng, round(90 * scale))
             + socket_cases(rng, round(200 * scale), harness) + foreign_cases(rng, round(120 * scale))
             + bomb_cases(rng, round(30 * scale)) + write_target_cases(rng))
    return cases + (process_cases(rng, scale, harness) if processes else [])
