"""Adversarial cases for files that come from elsewhere and files tuigpt writes (issue 26): crafted nanoGPT ckpt.pt and
meta.pkl through every path that reads them (`tuigpt sample`, `init_from`, `--resume` of a nanoGPT out_dir,
`export`), crafted Hugging Face folders, .py config bombs, and hostile write targets for `export` and
`tune --write` (a file in the way, a dangling link, a full or read-only disk, a name taken meanwhile).
The harness and its invariants: :mod:`support.adversarial`."""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import subprocess
from pathlib import Path
from typing import Any, Callable

import yaml
from support.adversarial import BASE, Case

from conftest import TINY
from support.corpus import shakespeare

ARGS = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, bias=True, vocab_size=65, dropout=0.0)
_SMALL = {k: TINY[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "device", "dtype",
                               "compile", "telemetry_interval", "num_threads")}


def _cli(args: list[str]) -> int:
    from tuigpt.cli import main as cli

    return cli.main(args)


# ---------------------------------------------------------------- crafted nanoGPT and Hugging Face files


def _nanogpt(work: Path, change: Callable[[dict[str, Any]], Any] | None, meta: Callable[[Path], Any] | None) -> Path:
    import torch
    from support.foreign import random_gpt, write_nanogpt_ckpt

    from tuigpt.engine.model import GPT, ModelArgs

    folder = work / "out-ng"
    model = GPT(ModelArgs(**ARGS))
    model.load_state_dict(random_gpt(65, 32, 2, 32, bias=True, seed=2))
    optimizer = torch.optim.AdamW(model.param_groups(0.1), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))[1].backward()
    optimizer.step()  # a real AdamW state, as nanoGPT's optimizer.state_dict() holds it
    write_nanogpt_ckpt(folder / "ckpt.pt", model.state_dict(), dict(ARGS), iter_num=10, best_val_loss=2.0,
                       dataset="shakespeare_char", optimizer=optimizer.state_dict())
    if change is not None:
        state = torch.load(folder / "ckpt.pt", weights_only=True)
        change(state)
        torch.save(state, folder / "ckpt.pt")
    if meta is not None:
        meta(folder / "meta.pkl")
    return folder


def _hf(work: Path, config: dict[str, Any], extra: Callable[[Path], Any] | None) -> Path:
    from support.foreign import random_gpt, write_hf_snapshot

    from tuigpt.engine.data.nanogpt import SHAKESPEARE_CHARS

    folder = work / "hf"
    write_hf_snapshot(folder, random_gpt(65, 32, 2, 32, bias=True, seed=3), n_head=2)
    (folder / "config.json").write_text(json.dumps({**json.loads((folder / "config.json").read_text()), **config}))
    (folder / "tuigpt.json").write_text(json.dumps({"tokenizer": {"kind": "char", "chars": SHAKESPEARE_CHARS}}))
    if extra is not None:
        extra(folder)
    return folder


def _bomb(path: Path) -> None:
    level: dict = {}
    for _ in range(3):
        level = {j: level for j in range(3000)}
    path.write_bytes(pickle.dumps({"vocab_size": 3, "itos": level}))


def _param_groups(value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda s: s.__setitem__("optimizer", {"state": {}, "param_groups": value})


NANOGPT_FIELDS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    *[(f"iter_num={v!r}", lambda s, v=v: s.__setitem__("iter_num", v)) for v in
      (math.nan, math.inf, None, [3], "5", -1, 10**30, True)],
    *[(f"model_args.{k}={v!r}", lambda s, k=k, v=v: s["model_args"].__setitem__(k, v)) for k, v in
      (("block_size", math.inf), ("vocab_size", math.inf), ("vocab_size", 10**18), ("n_layer", 10**9),
       ("n_embd", 0), ("n_head", 3), ("bias", "yes"), ("dropout", 2.0), ("n_embd", 1e300))],
    ("model_args=[]", lambda s: s.__setitem__("model_args", [])),
    ("model=list", lambda s: s.__setitem__("model", [1, 2])),
    ("model int keys", lambda s: s.__setitem__("model", {1: s["model"]["_orig_mod.transformer.wte.weight"]})),
    ("model NaN weight", lambda s: next(iter(s["model"].values())).fill_(math.nan)),
    ("param_groups=5", _param_groups(5)),
    ("param_groups=[1, 2]", _param_groups([1, 2])),
    ("param_groups of lists", _param_groups([{"params": [[1]]}])),
    ("param_groups lr text", _param_groups([{"params": list(range(10)), "lr": "fast"}])),
    ("optimizer state of junk", lambda s: s.__setitem__("optimizer", {"state": {"x": 1}, "param_groups": []})),
    ("best_val_loss NaN", lambda s: s.__setitem__("best_val_loss", s["best_val_loss"] * math.nan)),
    ("best_val_loss text", lambda s: s.__setitem__("best_val_loss", "low")),
    ("config=[1]", lambda s: s.__setitem__("config", [1])),
    ("config int keys", lambda s: s.__setitem__("config", {1: 2})),
    ("config block 10**9", lambda s: s["config"].__setitem__("block_size", 10**9)),
    ("config dataset ../x", lambda s: s["config"].__setitem__("dataset", "../x")),
]
META_FILES: list[tuple[str, Callable[[Path], Any]]] = [
    ("meta vocab 10**18", lambda p: p.write_bytes(pickle.dumps({"vocab_size": 10**18, "itos": {0: "a"}}))),
    ("meta pickle bomb", _bomb),
    ("meta FIFO", lambda p: os.mkfifo(p)),
    ("meta directory", lambda p: p.mkdir()),
    ("meta -> /dev/zero", lambda p: os.symlink("/dev/zero", p)),
    ("meta dangling link", lambda p: os.symlink(p.parent / "gone", p)),
    ("meta of code", lambda p: p.write_bytes(b"cos\nsystem\n(S'true'\ntR.")),
    ("meta mixed keys", lambda p: p.write_bytes(pickle.dumps({"itos": {0: "a", "x": "b"}}))),
]
HF_FOLDERS: list[tuple[str, dict[str, Any], Callable[[Path], Any] | None]] = [
    *[(f"config {k}={v!r}", {k: v}, None) for k, v in
      (("activation_function", ["gelu"]), ("activation_function", {"a": 1}), ("layer_norm_epsilon", "abc"),
       ("n_embd", 0), ("n_positions", -1), ("vocab_size", 10**12), ("n_embd", 1e300), ("n_layer", 10**9),
       ("n_head", True), ("n_inner", "wide"))],
    ("config.json 100,000 deep", {}, lambda f: (f / "config.json").write_text("[" * 100_000 + "]" * 100_000)),
    ("config.json FIFO", {}, lambda f: ((f / "config.json").unlink(), os.mkfifo(f / "config.json"))),
    ("shard FIFO", {}, lambda f: _shard(f, lambda shard: os.mkfifo(shard))),
    ("shard linked from outside", {}, lambda f: _shard(f, lambda shard: os.symlink(f.parent / "outside", shard))),
    ("shard ../ name", {}, lambda f: _shard(f, None, name="../x.safetensors")),
    ("3-D Conv1D weight", {}, lambda f: _tensor(f, "h.0.attn.c_attn.weight", (2, 32, 96))),
    ("tokenizer that does not fit", {}, lambda f: (f / "tuigpt.json").write_text(
        json.dumps({"tokenizer": {"kind": "char", "chars": "abc"}}))),
    ("tuigpt.json of junk", {}, lambda f: (f / "tuigpt.json").write_text('{"tokenizer": [1]}')),
]


def _shard(folder: Path, make: Callable[[Path], Any] | None, name: str = "shard.safetensors") -> None:
    (folder / "model.safetensors").rename(folder.parent / "outside")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"wte.weight": name}}))
    if make is not None:
        make(folder / name)


def _tensor(folder: Path, key: str, shape: tuple[int, ...]) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    tensors[key] = torch.zeros(*shape)
    save_file(tensors, str(folder / "model.safetensors"))


def _use(path: str, source: Callable[[Path], Path]) -> Callable[[Path], int]:
    def action(work: Path) -> int:
        folder = source(work)
        if path == "sample":
            return _cli(["sample", str(folder), "--max_new_tokens", "3"])
        if path == "export":
            return _cli(["export", str(folder), "--format", "hf", "--out", str(work / "exported")])
        if path == "init_from":
            config = work / "case.yaml"
            config.write_text(yaml.safe_dump({**BASE, "out_dir": str(work / "runs"), "init_from": str(folder),
                                              "max_iters": 1, "eval_interval": 1}))
            return _cli([str(config), "--headless"])
        config = work / "case.py"  # --resume of nanoGPT's own out_dir, with its own kind of config
        config.write_text(f"out_dir = {str(folder)!r}\ndataset = 'shakespeare_char'\nn_layer = 2\nn_head = 2\n"
                          f"n_embd = 32\nblock_size = 32\nbias = True\nbatch_size = 2\nmax_iters = 11\n"
                          f"eval_iters = 1\neval_interval = 100\ndevice = 'cpu'\ncompile = False\n"
                          f"dtype = 'float32'\n")
        return _cli([str(config), "--headless", "--init_from=resume", f"--data_path={shakespeare()}",
                     "--telemetry_interval=0"])
    return action


def foreign_cases(rng: random.Random, n: int) -> list[Case]:
    sources: list[tuple[str, Callable[[Path], Path], tuple[str, ...]]] = []
    for name, change in NANOGPT_FIELDS:
        sources.append((f"ckpt.pt {name}", lambda w, c=change: _nanogpt(w, c, None),
                        ("sample", "init_from", "resume", "export")))
    for name, meta in META_FILES:
        sources.append((name, lambda w, m=meta: _nanogpt(w, None, m), ("sample", "init_from", "resume", "export")))
    for name, config, extra in HF_FOLDERS:
        sources.append((f"HF {name}", lambda w, c=config, e=extra: _hf(w, c, e), ("sample", "init_from")))
    every = [(name, source, path) for name, source, paths in sources for path in paths]
    rng.shuffle(every)
    return [Case("foreign", f"{path} {name}", _use(path, source)) for name, source, path in every[:n]]


# ---------------------------------------------------------------- .py config bombs


def _py(text: str) -> Callable[[Path], int]:
    def action(work: Path) -> int:
        path = work / "case.py"
        path.write_text(f"out_dir = {str(work / 'runs' / 'fresh')!r}\nmax_iters = 0\n{text}\n")
        return _cli([str(path), "--headless"])
    return action


CONFIG_BOMBS = [
    "x = 10 ** 64\n" + "x = x ** 64\n" * 4, "x = 3\n" + "x = x * x\n" * 30, "seed = 0x" + "f" * 100_000,
    "x = 2\n" + "x = x ** x\n" * 8, "x = 1\n" + ("x=x" + "+1" * 16 + "\n") * 7000,
    "x = 10 ** 300\ny = x * x * x * x", "wandb_run_name = 9 ** 64 ** 64\nn_layer = 2",
    "x = -(2 ** 63)\nx = x * x * x * x * x * x * x * x * x * x * x * x * x * x * x * x * x",
    'x = f"{10 ** 300:>4000}"\ny = x + x', "x = 1e308 * 10", "seed = 7 ** 64 % 1000",
]


def bomb_cases(rng: random.Random, n: int) -> list[Case]:
    bombs = list(CONFIG_BOMBS)
    while len(bombs) < n:
        depth = rng.choice([10, 40, 80])
        bombs.append("x = 7\n" + "".join(rng.choice(["x = x * x\n", "x = x ** 3\n", "x = x + x\n", "x = x // 3\n"])
                                         for _ in range(depth)))
    return [Case("config bomb", f"bomb {k}", _py(text)) for k, text in enumerate(bombs[:n])]


# ---------------------------------------------------------------- write targets


def _mount(target: Path, *options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(target)],
                          capture_output=True).returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _file(path: Path, text: str = "x") -> Path:
    path.write_text(text)
    return path


def _listing(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = "-> " + os.readlink(p)
        elif p.is_file():
            out[str(p)] = p.read_bytes().hex()[:64] + str(p.stat().st_size)
    return out


def _export_into(make: Callable[[Path], Path], fmt: str = "nanogpt", mounted: str | None = None
                 ) -> tuple[Callable[[Path], int], Callable[[Path, int], str | None]]:
    """An export whose --out is what ``make`` sets up; nothing of what was there may change, and a failed export
    leaves nothing of its own."""
    seen: dict[str, dict[str, str]] = {}

    def action(work: Path) -> int:
        area = work / "area"
        area.mkdir()
        if mounted is not None and not _mount(area / "disk", *mounted.split(",")):
            return 2  # mounts not allowed here: nothing to test (said in the case name)
        out = make(area)
        seen["before"] = _listing(area)
        try:
            return _cli(["export", str(work / "runs" / "victim"), "--format", fmt, "--out", str(out)])
        finally:
            seen["after"] = _listing(area)
            if mounted is not None:
                _umount(area / "disk")

    def check(work: Path, code: int) -> str | None:
        if code != 0 and seen["after"] != seen["before"]:
            return f"changed: a refused export changed {set(seen['after']) ^ set(seen['before'])}"
        return None
    return action, check


def write_target_cases(rng: random.Random) -> list[Case]:
    cases = []
    exports: list[tuple[str, Callable[[Path], Path], str, str | None, tuple[int, ...]]] = [
        ("--out is a file", lambda a: _file(a / "f"), "nanogpt", None, (2,)),
        ("--out under a file", lambda a: _file(a / "f") / "sub", "hf", None, (2,)),
        ("dangling ckpt.pt link", lambda a: ((a / "o").mkdir(), os.symlink(a / "gone", a / "o" / "ckpt.pt")) and
         a / "o", "nanogpt", None, (2,)),
        ("config.json there", lambda a: ((a / "o").mkdir(), (a / "o" / "config.json").write_text("{}")) and a / "o",
         "hf", None, (2,)),
        ("full disk", lambda a: a / "disk" / "out", "nanogpt", "size=256k", (2, 4)),
        ("full disk, hf", lambda a: a / "disk" / "out", "hf", "size=64k", (2, 4)),
        ("read-only disk", lambda a: a / "disk" / "out", "hf", "ro", (2,)),
        ("empty folder", lambda a: (a / "o").mkdir() or a / "o", "hf", None, (0,)),
        ("deep new folder", lambda a: a / "x" / "y" / "z", "nanogpt", None, (0,)),
    ]
    for name, make, fmt, mounted, allowed in exports:
        action, check = _export_into(make, fmt, mounted)
        cases.append(Case("write target", f"export {name}", action, allowed=allowed, check=check))
    cases += _tune_cases(rng)
    return cases


def _tune_cases(rng: random.Random) -> list[Case]:
    def config(work: Path) -> Path:
        path = work / "tune.yaml"
        path.write_text(yaml.safe_dump({**TINY, "out_dir": str(work / "runs"), "data_path": str(shakespeare())}))
        path.chmod(0o644)
        return path

    def tune(target: Callable[[Path, Path], Path], timed: bool) -> Callable[[Path], int]:
        def action(work: Path) -> int:
            source = config(work)
            args = ["tune", str(source), "--write", str(target(work, source)), "--only-splits", "--steps", "1",
                    "--warmup", "0", "--batch-sizes", "2"]
            return _cli(args)
        return action

    def in_place_kept(work: Path, code: int) -> str | None:
        real = work / "tune.yaml"
        link = work / "link.yaml"
        if not link.is_symlink() or oct(real.stat().st_mode & 0o777) != oct(0o644) or os.stat(real).st_nlink != 2:
            return "lost: writing the config in place replaced its link, its mode or its hard link"
        return None

    def link_and_hard_link(work: Path, source: Path) -> Path:
        (work / "link.yaml").symlink_to(source)
        os.link(source, work / "hard.yaml")
        return work / "link.yaml"

    missing = Case("write target", "tune --write into a missing folder", tune(lambda w, s: w / "no" / "t.yaml", False),
                   allowed=(2,))
    other = Case("write target", "tune --write over another file",
                 tune(lambda w, s: _file(w / "other.yaml", "keep: me\n"), False),
                 allowed=(2,), check=lambda w, c: None if (w / "other.yaml").read_text() == "keep: me\n"
                 else "lost: another file was overwritten")
    folder = Case("write target", "tune --write onto a folder", tune(lambda w, s: w, False), allowed=(2,))
    # exit 1 is tune's documented "no winner: the machine's load changed while timing, twice" (nothing written), which
    # a loaded machine gives (the full suite beside other work did); a crash raises out of main and is caught apart
    in_place = Case("write target", "tune --write through a link to a hard-linked config",
                    tune(lambda w, s: link_and_hard_link(w, s), True), allowed=(0, 1), check=in_place_kept)
    return [missing, other, folder] + ([in_place] if rng.random() < 0.5 else [])
