"""nanoGPT's prepared data: ``data/<dataset>/train.bin`` and ``val.bin`` (uint16 token ids, as its prepare.py
scripts write them) and ``meta.pkl`` (a character vocabulary: vocab_size, itos, stoi).

meta.pkl is a pickle, and unpickling can run code. It is read with an unpickler that resolves no class or
function at all, then checked to hold only dicts, strings and ints: a file that is anything else is refused.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from tuigpt.engine.data.tokenizer import CharTokenizer, TiktokenTokenizer, Tokenizer
from tuigpt.run.errors import UserError

# the vocabulary of tiny Shakespeare, in id order: nanoGPT's data/shakespeare_char/prepare.py makes it as
# sorted(set(text)), which is what tuigpt's char tokenizer does with the same corpus (a test checks both)
SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
META_FILE = "meta.pkl"
MAX_META_BYTES = 16 << 20
CHECK_TOKENS = 16 << 20  # token ids checked against the vocabulary at the start of train.bin (all of val.bin)


class _DataOnly(pickle.Unpickler):
    """Unpickles plain containers and scalars only: any reference to a class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"it refers to {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it refers to an external object")


def read_meta(path: Path) -> CharTokenizer:
    """The character vocabulary of a nanoGPT meta.pkl; UserError naming what is wrong with the file."""
    try:
        raw = path.read_bytes() if path.stat().st_size <= MAX_META_BYTES else None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw is None:
        raise UserError(f"{path} is over {MAX_META_BYTES >> 20} MiB: not a nanoGPT meta.pkl")
    try:
        meta = _DataOnly(io.BytesIO(raw)).load()
    except Exception as exc:  # pickle fails in many ways on arbitrary bytes
        raise UserError(f"{path} was refused: {str(exc)[:120] or type(exc).__name__} (a nanoGPT meta.pkl holds "
                        f"only dicts, strings and ints)") from None
    bad = _not_plain(meta)
    if bad is not None:
        raise UserError(f"{path} was refused: it holds a {bad} (a nanoGPT meta.pkl holds only dicts, strings and ints)")
    return _vocabulary(meta, path)


def _not_plain(value: Any, depth: int = 0) -> str | None:
    """The name of the first type that is not a dict, str or int (bool excluded), or None."""
    if depth > 4:
        return "nesting deeper than a vocabulary needs"
    if isinstance(value, dict):
        for k, v in value.items():
            bad = _not_plain(k, depth + 1) or _not_plain(v, depth + 1)
            if bad is not None:
                return bad
        return None
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    return type(value).__name__


def _vocabulary(meta: Any, path: Path) -> CharTokenizer:
    if not isinstance(meta, dict) or not isinstance(meta.get("itos"), dict):
        raise UserError(f"{path} has no itos table: not a nanoGPT character meta.pkl")
    itos = meta["itos"]
    size = meta.get("vocab_size", len(itos))
    if not isinstance(size, int) or sorted(itos) != list(range(size)):
        raise UserError(f"{path}: itos must map every id 0..vocab_size-1 ({size}) to a character")
    chars = [itos[i] for i in range(size)]
    if not all(isinstance(c, str) and len(c) == 1 for c in chars) or len(set(chars)) != size:
        raise UserError(f"{path}: itos must map each id to its own single character")
    stoi = meta.get("stoi")
    if isinstance(stoi, dict) and any(stoi.get(c) != i for i, c in enumerate(chars)):
        raise UserError(f"{path}: stoi and itos disagree (the file is damaged)")
    return CharTokenizer("".join(chars))


def write_meta(tokenizer: CharTokenizer) -> bytes:
    """meta.pkl bytes as nanoGPT's data/shakespeare_char/prepare.py writes them."""
    chars = tokenizer.chars
    return pickle.dumps({"vocab_size": len(chars), "itos": dict(enumerate(chars)),
                         "stoi": {c: i for i, c in enumerate(chars)}})


def open_bins(folder: Path, tokenizer: str) -> tuple[np.ndarray, np.ndarray, Tokenizer, str]:
    """(train, val, tokenizer, fingerprint) of a nanoGPT data folder. The tokenizer is meta.pkl's characters
    when there is one, else gpt2 (as nanoGPT's train.py assumes); ``tokenizer`` other than auto must agree."""
    missing = [name for name in ("train.bin", "val.bin") if not (folder / name).is_file()]
    if missing:
        raise UserError(f"data_path {folder} has no {' or '.join(missing)}: a nanoGPT data folder holds the files its "
                        f"prepare.py writes (python data/<dataset>/prepare.py), or use dataset=text with your text "
                        f"(llm.c / modded-nanogpt *_train_*.bin shards: dataset=shards)")
    meta_path = folder / META_FILE
    if meta_path.is_file():
        tok: Tokenizer = read_meta(meta_path)
        if tokenizer not in ("auto", "char"):
            raise UserError(f"tokenizer={tokenizer} but {meta_path} holds a character vocabulary: use tokenizer=auto")
    elif tokenizer == "char":
        raise UserError(f"tokenizer=char needs {meta_path} (nanoGPT's character vocabulary) beside the data")
    else:
        tok = TiktokenTokenizer("gpt2" if tokenizer == "auto" else tokenizer)
    splits = []
    fingerprint = hashlib.sha256(meta_path.read_bytes() if meta_path.is_file() else b"")
    for name in ("train.bin", "val.bin"):
        path = folder / name
        size = path.stat().st_size
        if size % 2:
            raise UserError(f"{path} has an odd number of bytes: not nanoGPT's uint16 token ids")
        tokens = np.memmap(path, dtype=np.uint16, mode="r") if size else np.zeros(0, np.uint16)
        head = tokens[:CHECK_TOKENS] if name == "train.bin" else tokens
        if len(head) and int(head.max()) >= tok.vocab_size:
            raise UserError(f"{path} holds token id {int(head.max())}, outside the {tok.vocab_size}-token vocabulary of "
                            f"{tok.name} (a meta.pkl missing or from other data)")
        fingerprint.update(f"{name}:{size}:".encode() + bytes(tokens[:4096]))
        splits.append(tokens)
    return splits[0], splits[1], tok, fingerprint.hexdigest()
