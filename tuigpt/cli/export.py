"""`tuigpt export RUN_DIR --format nanogpt|hf`: a run's model in nanoGPT's or Hugging Face's format.

nanoGPT: ``ckpt.pt`` as its train.py writes it (model, optimizer, model_args, iter_num, best_val_loss, config),
so its sample.py samples it and its train.py resumes it (init_from='resume'), plus ``meta.pkl`` for a
character vocabulary; only GPT-2's block (arch gpt2: nanoGPT's model cannot compute the others). Hugging Face:
``model.safetensors`` and ``config.json`` for transformers' GPT2LMHeadModel (GPT-2's block, Conv1D layout) or
NanoChatForCausalLM (nanochat's block), plus ``tuigpt.json`` (the tokenizer). Nothing that exists is overwritten.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tuigpt.cli.args import Parser
from tuigpt.run.errors import UserError
from tuigpt.run.exits import EXIT_OK
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
    if ns.format == "nanogpt":
        written, notices, hint = _nanogpt(opened.checkpoint, out)
    else:
        written, notices, hint = _hf(opened.checkpoint, out, source)
    checkpoint = opened.checkpoint
    best = checkpoint.get("best_val_loss")
    print(f"exported {source} (iteration {checkpoint['iter_num']}"
          f"{f', best val loss {best:.4f}' if best is not None else ''}) as {ns.format}:")
    for path in written:
        print(f"  {path}")
    for notice in notices:
        print(f"note: {notice}", file=sys.stderr)
    print(hint)
    return EXIT_OK


def _checkpoint_file(run: Path, which: str | None) -> Path:
    if run.is_file():
        if which is not None:
            raise UserError("--checkpoint picks a file of a run folder; a .pt file was given")
        return run
    if not run.is_dir():
        raise UserError(f"{run} does not exist: give a run folder (see `tuigpt runs`) or a .pt checkpoint")
    names = {"best": [BEST], "last": [LAST], None: [BEST, LAST, "ckpt.pt"]}[which]
    for name in names:
        if (run / name).is_file():
            return run / name
    raise UserError(f"{run} holds no {' or '.join(names)} to export")


def _refuse_existing(paths: list[Path]) -> None:
    existing = [p for p in paths if p.exists()]
    if existing:
        raise UserError(f"{existing[0]} already exists: export into another folder with --out DIR, or delete it")


def _nanogpt(checkpoint: dict, out: Path) -> tuple[list[Path], list[str], str]:
    from tuigpt.engine.checkpoint import save_checkpoint
    from tuigpt.engine.data.nanogpt import META_FILE
    from tuigpt.engine.nanogpt import to_nanogpt
    from tuigpt.run.files import atomic_write

    state, meta, notices = to_nanogpt(checkpoint)
    targets = [out / "ckpt.pt"] + ([out / META_FILE] if meta is not None else [])
    _refuse_existing(targets)
    save_checkpoint(state, targets[0])
    if meta is not None:
        atomic_write(targets[1], meta)
    hint = (f"in nanoGPT: python sample.py --out_dir={out} (resume training: python train.py CONFIG "
            f"--init_from=resume --out_dir={out})")
    return targets, notices, hint


def _hf(checkpoint: dict, out: Path, source: Path) -> tuple[list[Path], list[str], str]:
    from tuigpt.engine import hf
    from tuigpt.engine.model import ModelArgs

    args = ModelArgs(**checkpoint["model_args"])
    model_class = hf.layout(args)  # UserError where no transformers class computes this block
    _refuse_existing([out / hf.WEIGHTS, out / hf.CONFIG, out / hf.TUIGPT_META])
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
    written = hf.write_hf(out, checkpoint["model"], args, tokenizer, provenance)
    return written, notices, f"in transformers: {model_class}.from_pretrained({str(out)!r})"
