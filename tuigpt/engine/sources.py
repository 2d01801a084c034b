"""Where a model's weights come from, other than a fresh initialisation: ``init_from`` and ``tuigpt sample``.

A source is a tuigpt checkpoint (``.pt`` or a run folder), a nanoGPT checkpoint (``ckpt.pt`` or its out_dir),
or a folder of Hugging Face GPT-2 weights. The names ``gpt2``, ``gpt2-medium``, ``gpt2-large`` and ``gpt2-xl``
(nanoGPT's ``init_from``) are looked up in the local Hugging Face cache only: tuigpt never downloads weights.
Starting from a source, the model takes the source's shape (each key that differs from the config is
reported) and a shorter block_size crops the position embeddings; dropout is the config's.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuigpt.engine import hf, nanogpt
from tuigpt.engine.checkpoint import read_torch_file
from tuigpt.engine.checkpoint_check import check_structure, first_not_finite
from tuigpt.engine.data import Tokenizer
from tuigpt.engine.model import GPT, ModelArgs
from tuigpt.run.config import MODEL_KEYS, SWITCHES, TrainConfig, arch_of
from tuigpt.run.errors import UserError
from tuigpt.run.fmt import shown
from tuigpt.run.rundir import BEST, LAST
from tuigpt.run.user_files import read_regular

GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
NANOGPT_CKPT = "ckpt.pt"
PICKLED_HF = "pytorch_model.bin"


@dataclass
class Source:
    """Weights under tuigpt's names, the model they fit, and the tokenizer they were trained with."""

    kind: str  # "tuigpt checkpoint" | "nanoGPT checkpoint" | "Hugging Face GPT-2" | "Hugging Face NanoChat"
    path: Path
    args: ModelArgs
    state: dict[str, torch.Tensor]
    tokenizer: dict[str, Any] | None
    val_loss: float | None = None
    checkpoint: dict[str, Any] | None = None  # the whole checkpoint, as tuigpt's format (not for HF folders)
    notices: list[str] = field(default_factory=list)

    def describe(self) -> str:
        loss = f", val loss {self.val_loss:.4f} when saved" if self.val_loss is not None else ""
        return f"{self.kind} {self.path}{loss}"


def open_source(spec: str, what: str = "init_from") -> Source:
    """The source ``spec`` names; UserError saying what is wrong and what to give instead (``what``: the
    argument that named it, as the user wrote it)."""
    path = hf_cache_snapshot(spec) if spec in GPT2_NAMES and not Path(spec).exists() else Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"{what} {shown(spec, 200)}: {shown(str(path), 200)} does not exist (give a tuigpt .pt, a "
                        f"nanoGPT ckpt.pt, a run folder or a folder with model.safetensors + config.json)")
    if hf.is_hf_folder(path):
        args = hf.read_args(path)
        tokenizer, where = hf.read_tokenizer(path, args)
        kind = "Hugging Face NanoChat" if args.rope else "Hugging Face GPT-2"
        return Source(kind, path, args, hf.read_weights(path, args), tokenizer,
                      notices=[f"{path}: {kind} weights, tokenizer {where}"])
    if path.is_dir():
        found = next((path / n for n in (NANOGPT_CKPT, BEST, LAST) if (path / n).is_file()), None)
        if found is None and (path / PICKLED_HF).is_file():
            raise UserError(f"{path} holds {PICKLED_HF}, a pickle that could run code when loaded, which tuigpt does "
                            f"not read: download model.safetensors (the same weights) beside it")
        if found is None:
            raise UserError(f"{path} holds no model: expected model.safetensors + config.json (Hugging Face), "
                            f"{NANOGPT_CKPT} (nanoGPT), or {BEST}/{LAST} (tuigpt)")
        path = found
    return _from_file(path)


def _from_file(path: Path) -> Source:
    state = read_torch_file(path)
    if nanogpt.is_nanogpt(state):
        checkpoint = nanogpt.from_nanogpt(state, path)
        kind = "nanoGPT checkpoint"
    elif isinstance(state, dict) and "format" in state:
        from tuigpt.engine.checkpoint import load_checkpoint

        checkpoint, kind = load_checkpoint(path), "tuigpt checkpoint"
    else:
        raise UserError(f"{path} is neither a tuigpt checkpoint nor a nanoGPT one (model, model_args, iter_num)")
    _, args, _ = check_structure(checkpoint, path, for_training=False)  # every field, the tokenizer fits the model
    return Source(kind, path, args, checkpoint["model"], checkpoint["tokenizer"], checkpoint.get("best_val_loss"),
                  checkpoint, list(checkpoint.get("notices", [])))


def hf_cache_snapshot(name: str) -> Path:
    """The local Hugging Face cache's snapshot of GPT-2 ``name`` (what transformers downloaded once); UserError
    saying how to get one otherwise."""
    roots = [Path(os.environ["HF_HUB_CACHE"])] if os.environ.get("HF_HUB_CACHE") else []
    roots.append(Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    for root in roots:
        for repo in (f"models--{name}", f"models--openai-community--{name}"):
            snapshots = root / repo / "snapshots"
            ref = root / repo / "refs" / "main"
            candidates = [snapshots / _ref(ref)] if ref.is_file() else []
            candidates += sorted(snapshots.glob("*"), key=_mtime, reverse=True) if snapshots.is_dir() else []
            for snapshot in candidates:
                if hf.is_hf_folder(snapshot) or (snapshot / PICKLED_HF).is_file():
                    return snapshot  # a pickle-only snapshot is refused by open_source, saying why
    raise UserError(f"init_from={name}: tuigpt does not download weights and found no {name} in the Hugging Face "
                    f"cache ({', '.join(map(str, roots))}); download it once where there is internet (huggingface-cli "
                    f"download openai-community/{name} model.safetensors config.json --local-dir {name}) and set "
                    f"init_from to that folder")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # a dangling link among the snapshots
        return 0.0


def _ref(ref: Path) -> str:
    """The commit a Hugging Face cache's refs/main names ("" when it cannot be read as one: no snapshot then)."""
    try:
        name = read_regular(ref, 256).decode("ascii").strip()
    except (OSError, ValueError):
        return ""
    return name if name and "/" not in name and name not in (".", "..") else ""


# ---------------------------------------------------------------- starting a run from a source


def fit_config(config: TrainConfig, source: Source) -> tuple[TrainConfig, list[str]]:
    """The config with the source's model shape, and one line per key that changed."""
    changes: dict[str, Any] = {}
    notes = [f"init_from: weights from {source.describe()}"] + source.notices
    for key in MODEL_KEYS:
        theirs, ours = getattr(source.args, key), getattr(config, key)
        if key == "block_size":
            if ours < theirs:
                what = "its context" if source.args.rope else "position embeddings"
                notes.append(f"init_from: {what} cropped from {theirs} to block_size {ours}")
                continue
        if theirs != ours:
            changes[key] = theirs
            notes.append(f"init_from: {key}={theirs!r} from the source (the config said {ours!r})")
    if any(key in changes for key in SWITCHES):  # the block is the source's: arch names it where a bundle does
        changes["arch"] = arch_of({key: getattr(source.args, key) for key in SWITCHES}) or config.arch
    return (dataclasses.replace(config, **changes) if changes else config), notes


def check_tokenizer(source: Source, tokenizer: Tokenizer, spec: str) -> None:
    """UserError unless the data is tokenized as the source model was trained, naming the difference."""
    theirs, ours = source.tokenizer, tokenizer.to_meta()
    if theirs is None:
        raise UserError(f"init_from {shown(spec, 200)}: no record of the tokenizer it was trained with ({source.args.vocab_size} "
                        f"tokens); tuigpt only starts from it with GPT-2's BPE data or a folder it exported itself")
    if theirs.get("kind") != ours["kind"] or (ours["kind"] == "tiktoken" and theirs.get("name") != ours["name"]):
        raise UserError(f"init_from {shown(spec, 200)}: it was trained with tokenizer {_tok_name(theirs)}, the data is tokenized "
                        f"with {_tok_name(ours)}: set dataset/tokenizer to match the source")
    if ours["kind"] == "char" and theirs.get("chars") != ours["chars"]:
        old, new = set(theirs.get("chars") or ""), set(ours["chars"])
        missing, extra = "".join(sorted(old - new)), "".join(sorted(new - old))
        raise UserError(f"init_from {shown(spec, 200)}: its {len(old)}-character vocabulary differs from the data's {len(new)} "
                        f"characters (only in the data: {extra[:40]!r}; only in the source: {missing[:40]!r}"
                        f"{'; same characters, other order' if not missing and not extra else ''}): a character "
                        f"model fine-tunes only on text with the same character set")
    if tokenizer.vocab_size > source.args.vocab_size:
        raise UserError(f"init_from {shown(spec, 200)}: the model has {source.args.vocab_size} tokens, the tokenizer "
                        f"{tokenizer.vocab_size}")


def _tok_name(meta: dict[str, Any]) -> str:
    if meta.get("kind") == "char":
        return f"char ({len(meta.get('chars') or '')} characters)"
    return str(meta.get("name"))


def source_args(source: Source, config: TrainConfig) -> ModelArgs:
    """The model to build: the source's, at the config's block_size (at most the source's) and dropout."""
    return dataclasses.replace(source.args, block_size=min(config.block_size, source.args.block_size),
                               dropout=config.dropout)


def load_source(model: GPT, source: Source) -> None:
    """Copy the source's weights into ``model`` (built by :func:`source_args`); UserError naming the first
    parameter that does not fit."""
    state = dict(source.state)
    wpe = state.get("transformer.wpe.weight")
    if wpe is not None and wpe.size(0) > model.args.block_size:
        state["transformer.wpe.weight"] = wpe[: model.args.block_size]
    check_state(state, model, source.describe())
    if (bad := first_not_finite(state.items())) is not None:
        raise UserError(f"{source.describe()}: weight {bad} is not finite (NaN or Inf): use other weights")
    with torch.no_grad():
        model.load_state_dict(state, strict=True)


def check_state(state: dict[str, Any], model: torch.nn.Module, where: str) -> None:
    """UserError naming the first weight that is missing, unexpected or of another shape than ``model``'s."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (the model's is {expected[k]})" for k in expected
             if k in state and tuple(getattr(state[k], "shape", ())) != expected[k]]
    if missing or extra or wrong:
        what = (f"no {missing[0]}" if missing else f"an unexpected {extra[0]}" if extra else f"weight {wrong[0]}")
        raise UserError(f"{where} does not fit a GPT of its own model_args: {what} "
                        f"({len(missing)} missing, {len(extra)} unexpected, {len(wrong)} of another shape)")
