"""`tuigpt export RUN_DIR --format nanogpt|hf`: a run's model in nanoGPT's or Hugging Face's format.

nanoGPT: ``ckpt.pt`` as its train.py writes it (model, optimizer, model_args, iter_num, best_val_loss, config),
so its sample.py samples it and its train.py resumes it (init_from='resume'), plus ``meta.pkl`` for a
character vocabulary; only GPT-2's block (arch gpt2: nanoGPT's model cannot compute the others). Hugging Face:
``model.safetensors`` and ``config.json`` for transformers' GPT2LMHeadModel (GPT-2's block, Conv1D layout) or
NanoChatForCausalLM (nanochat's block), plus ``tuigpt.json`` (the tokenizer).

The files appear together or not at all (:func:`tuigpt.run.files.atomic_folder`): a full disk or a kill mid-way
leaves nothing, so the same command simply runs again. Nothing that exists is overwritten (a file, a link, a
dangling link of the same name), not even one made while the export was being written. A new folder is made private
(0700, files 0600), as a run's are.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from tuigpt.cli.args import Parser
from tuigpt.run.errors import UserError
from tuigpt.run.exits import EXIT_OK
from tuigpt.run.files import atomic_folder, write_failure
from tuigpt.run.fmt import clip
from tuigpt.run.rundir import BEST, LAST

FORMATS = ("nanogpt", "hf")


def main(args: list[str]) -> int:
    parser = Parser(prog="tuigpt export", description="Write a run's model in nanoGPT's or Hugging Face's format.")
    parser.add_argument("run", help="a run folder (checkpoints/<run_name>), a .pt checkpoint, or nanoGPT's ckpt.pt")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="nanogpt: ckpt.pt (+ meta.pkl); hf: model.safetensors + config.json")
    parser.add_argument("--checkpoint", choices=("best", "last"), default=None,
                        help="which checkpoint of a run folder (default: best.pt if there is one, else last.pt)")
    parser.add_argument("--out", default=None, help="folder to write into (default: RUN/export-FORMAT)")
    ns = parser.parse_args(args)
    source = _checkpoint_file(Path(ns.run), ns.checkpoint)
    out = Path(ns.out) if ns.out else (source.parent / f"export-{ns.format}")

    from tuigpt.engine.sources import open_source

    opened = open_source(str(source))
    if opened.checkpoint is None:
        raise UserError(f"{source} is not a checkpoint to export")
    convert = _nanogpt if ns.format == "nanogpt" else _hf
    files, notices, hint = convert(opened.checkpoint, out, source)
    _check_out(out, list(files))  # before anything is written (and checked again, atomically, when it is)
    try:
        with atomic_folder(out) as folder:
            for name, write in files.items():
                write(folder / name)
    except FileExistsError as exc:
        raise UserError(f"{clip(str(exc.filename or out), 200)} already exists (made while the export was being "
                        f"written?): export into another folder with --out DIR, or delete it") from None
    except OSError as exc:
        raise write_failure(exc, out, "export into a folder you can write with --out DIR") from None
    checkpoint = opened.checkpoint
    best = checkpoint.get("best_val_loss")
    print(f"exported {source} (iteration {checkpoint['iter_num']}"
          f"{f', best val loss {best:.4f}' if best is not None else ''}) as {ns.format}:")
    for name in files:
        print(f"  {out / name}")
    for notice in notices:
        print(f"note: {notice}", file=sys.stderr)
    print(hint)
    return EXIT_OK


def _checkpoint_file(run: Path, which: str | None) -> Path:
    if not run.is_dir():
        if which is not None:
            raise UserError("--checkpoint picks a file of a run folder; a .pt file was given")
        if not os.path.lexists(run):
            raise UserError(f"{run} does not exist: give a run folder (see `tuigpt runs`) or a .pt checkpoint")
        return run  # a FIFO, a device or a dangling link is refused, naming it, when it is read
    names = {"best": [BEST], "last": [LAST], None: [BEST, LAST, "ckpt.pt"]}[which]
    for name in names:
        if os.path.lexists(run / name):
            return run / name
    raise UserError(f"{run} holds no {' or '.join(names)} to export")


def _check_out(out: Path, names: list[str]) -> None:
    """--out must be a folder (or nothing yet) holding none of the names, under a folder this user can write."""
    fix = "export into another folder with --out DIR"
    if os.path.lexists(out) and not out.is_dir():
        raise UserError(f"--out {clip(str(out), 200)} is a file, not a folder: {fix}")
    existing = [out / n for n in names if os.path.lexists(out / n)]
    if existing:
        raise UserError(f"{clip(str(existing[0]), 200)} already exists: {fix}, or delete it")
    parent = out
    while not os.path.lexists(parent) and parent.parent != parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--out {clip(str(out), 200)}: {clip(str(parent), 200)} is a file, not a folder: {fix}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {clip(str(out), 200)}: {clip(str(parent), 200)} is not writable (permissions, or "
                        f"a read-only file system): {fix}")


Files = dict[str, Callable[[Path], None]]  # each output file's name, and what writes it at a given path


def _nanogpt(checkpoint: dict, out: Path, source: Path) -> tuple[Files, list[str], str]:
    from tuigpt.engine.checkpoint import save_checkpoint
    from tuigpt.engine.data.nanogpt import META_FILE
    from tuigpt.engine.nanogpt import to_nanogpt

    state, meta, notices = to_nanogpt(checkpoint)
    files: Files = {"ckpt.pt": lambda path: save_checkpoint(state, path)}
    if meta is not None:
        files[META_FILE] = lambda path: _write(path, meta)
    hint = (f"in nanoGPT: python sample.py --out_dir={out} (resume training: python train.py CONFIG "
            f"--init_from=resume --out_dir={out})")
    return files, notices, hint


def _hf(checkpoint: dict, out: Path, source: Path) -> tuple[Files, list[str], str]:
    from tuigpt.engine import hf
    from tuigpt.engine.model import ModelArgs

    args = ModelArgs(**checkpoint["model_args"])
    model_class = hf.layout(args)  # UserError where no transformers class computes this block
    notices = []
    if model_class != "GPT2LMHeadModel":
        notices.append(f"{model_class} is in transformers 5.0 and later")
    elif not args.bias:
        notices.append("bias=false: GPT-2 always has biases, so they are written as zeros (the same function; "
                       "fine-tuning in transformers will train them)")
    tokenizer = checkpoint["tokenizer"]
    if tokenizer.get("kind") == "char":
        notices.append(f"tokenizer: tuigpt's {len(tokenizer['chars'])}-character vocabulary (id = position in "
                       f"'chars' of {hf.TUIGPT_META}); transformers has no tokenizer for it")
    else:
        notices.append(f"tokenizer: {tokenizer.get('name')} (tiktoken); in transformers GPT2TokenizerFast "
                       f"from_pretrained('gpt2') encodes the same ids")
    provenance = {"exported_from": str(source), "iter_num": int(checkpoint["iter_num"]),
                  "best_val_loss": checkpoint.get("best_val_loss"), "gelu": args.gelu}
    contents = hf.hf_files(checkpoint["model"], args, tokenizer, provenance)
    files: Files = {name: (lambda path, data=data: _write(path, data)) for name, data in contents.items()}
    return files, notices, f"in transformers: {model_class}.from_pretrained({str(out)!r})"


def _write(path: Path, data: bytes) -> None:
    """A new file of the export (0600, as a run's files), inside the folder atomic_folder publishes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
