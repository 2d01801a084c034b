"""nanoGPT's prepared data: ``data/<dataset>/train.bin`` and ``val.bin`` (uint16 token ids, as its prepare.py
scripts write them) and ``meta.pkl`` (a character vocabulary: vocab_size, itos, stoi).

meta.pkl is a pickle, and unpickling can run code. It is read (a regular file of at most MAX_META_BYTES) with an
unpickler that resolves no class or function at all, then checked to hold only dicts, strings and ints, visiting each
object once (a pickle can make a few bytes into a tree of billions of shared references): a file that is anything
else is refused. A meta.pkl that is not a regular file (a FIFO, a directory, a link to a device) is refused too,
never passed over as if absent.
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
from tuigpt.run.fmt import shown
from tuigpt.run.user_files import optional_user_file, read_user_bytes

# the vocabulary of tiny Shakespeare, in id order: nanoGPT's data/shakespeare_char/prepare.py makes it as
# sorted(set(text)), which is what tuigpt's char tokenizer does with the same corpus (a test checks both)
SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
META_FILE = "meta.pkl"
MAX_META_BYTES = 16 << 20
MAX_META_OBJECTS = 1 << 20  # dict entries, strings and ints a meta.pkl may hold: a character vocabulary has ~100s
MAX_VOCAB = 1 << 24  # as for checkpoints: a vocabulary of characters is never bigger
_META_FIX = "put nanoGPT's data/<dataset>/meta.pkl (written by its prepare.py) there, or remove it"
CHECK_TOKENS = 16 << 20  # token ids checked against the vocabulary at the start of train.bin (all of val.bin)


class _DataOnly(pickle.Unpickler):
    """Unpickles plain containers and scalars only: any reference to a class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"it refers to {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it refers to an external object")


def meta_present(path: Path) -> bool:
    """Whether a meta.pkl is at ``path`` (a UserError when something there is not a regular file)."""
    return optional_user_file(path, "meta.pkl", _META_FIX)


def read_meta(path: Path) -> CharTokenizer:
    """The character vocabulary of a nanoGPT meta.pkl; UserError naming what is wrong with the file."""
    raw = read_user_bytes(path, "meta.pkl", _META_FIX, MAX_META_BYTES)
    try:
        meta = _DataOnly(io.BytesIO(raw)).load()
    except Exception as exc:  # pickle fails in many ways on arbitrary bytes
        raise UserError(f"{path} was refused: {str(exc)[:120] or type(exc).__name__} (a nanoGPT meta.pkl holds "
                        f"only dicts, strings and ints)") from None
    bad = _not_plain(meta)
    if bad is not None:
        raise UserError(f"{path} was refused: it holds {bad} (a nanoGPT meta.pkl holds only dicts, strings and ints)")
    return _vocabulary(meta, path)


def _not_plain(value: Any) -> str | None:
    """What makes ``value`` more than a vocabulary's dicts, strs and ints (bool excluded), or None. Each object is
    visited once and at most MAX_META_OBJECTS in all, so shared references cannot make the walk a pickle bomb."""
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(value, 0)]
    visited = 0
    while todo:
        item, depth = todo.pop()
        if isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool)):
            visited += 1
        elif isinstance(item, dict):
            if depth > 4:
                return "nesting deeper than a vocabulary needs"
            if id(item) in seen:
                continue
            seen.add(id(item))
            visited += len(item)
            for k, v in item.items():
                todo += [(k, depth + 1), (v, depth + 1)]
        else:
            return f"a {type(item).__name__}"
        if visited > MAX_META_OBJECTS:
            return f"more than {MAX_META_OBJECTS:,} entries"
    return None


def _vocabulary(meta: Any, path: Path) -> CharTokenizer:
    if not isinstance(meta, dict) or not isinstance(meta.get("itos"), dict):
        raise UserError(f"{path} has no itos table: not a nanoGPT character meta.pkl")
    itos = meta["itos"]
    size = meta.get("vocab_size", len(itos))
    if not isinstance(size, int) or not 1 <= size <= MAX_VOCAB or size != len(itos) \
            or not all(isinstance(i, int) for i in itos) or sorted(itos) != list(range(size)):
        raise UserError(f"{path}: itos must map every id 0..vocab_size-1 ({shown(size, 30)}) to a character, for "
                        f"at most {MAX_VOCAB:,} ids")
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
    if meta_present(meta_path):
        tok: Tokenizer = read_meta(meta_path)
        if tokenizer not in ("auto", "char"):
            raise UserError(f"tokenizer={tokenizer} but {meta_path} holds a character vocabulary: use tokenizer=auto")
    elif tokenizer == "char":
        raise UserError(f"tokenizer=char needs {meta_path} (nanoGPT's character vocabulary) beside the data")
    else:
        tok = TiktokenTokenizer("gpt2" if tokenizer == "auto" else tokenizer)
    splits = []
    fingerprint = hashlib.sha256(read_user_bytes(meta_path, "meta.pkl", _META_FIX, MAX_META_BYTES)
                                 if isinstance(tok, CharTokenizer) else b"")
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
