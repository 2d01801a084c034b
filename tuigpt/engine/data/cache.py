"""Encoded splits on disk: raw uint16/uint32 train.bin and val.bin, described by meta.json (written last)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tuigpt.engine.data.tokenizer import Tokenizer
from tuigpt.run.errors import UserError
from tuigpt.run.files import atomic_write
from tuigpt.run.user_files import read_regular

TRAIN_FRACTION = 0.9  # nanoGPT: first 90% of tokens train, last 10% val
_CACHE_VERSION = 1


def _memmap(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    # np.memmap refuses empty files; an empty split is reported later by check_block_size
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,)) if count else np.zeros(0, dtype)


def open_cache(folder: Path, sha: str, tok_name: str) -> tuple[np.ndarray, np.ndarray, Tokenizer] | None:
    """The cached splits, or None when missing, stale or damaged (so the caller rebuilds)."""
    try:
        meta = json.loads(read_regular(folder / "meta.json", 1 << 20))  # never a FIFO, never unbounded
        dtype = np.dtype(meta["dtype"])
        counts = {split: int(meta["tokens"][split]) for split in ("train", "val")}
        ok = (
            meta["version"] == _CACHE_VERSION
            and meta["source_sha256"] == sha
            and meta["tokenizer"]["kind"] == ("char" if tok_name == "char" else "tiktoken")
            and dtype in (np.dtype(np.uint16), np.dtype(np.uint32))
            and all((folder / f"{s}.bin").stat().st_size == n * dtype.itemsize for s, n in counts.items())
        )
        if not ok:
            return None
        tok = Tokenizer.from_meta(meta["tokenizer"])
        if tok.name != tok_name or tok.vocab_size != meta["vocab_size"]:
            return None
        return _memmap(folder / "train.bin", dtype, counts["train"]), _memmap(folder / "val.bin", dtype, counts["val"]), tok
    except (OSError, ValueError, KeyError, TypeError, RecursionError, UserError):
        return None


def build_cache(folder: Path, tok: Tokenizer, text: str, sha: str) -> None:
    """Encode ``text`` and write train.bin, val.bin, then meta.json (last: it marks the cache complete)."""
    ids = tok.encode_array(text)
    dtype = np.dtype(np.uint16 if tok.vocab_size < 65536 else np.uint32)
    n_train = int(len(ids) * TRAIN_FRACTION)
    splits = {"train": ids[:n_train], "val": ids[n_train:]}
    meta = {
        "version": _CACHE_VERSION,
        "tokenizer": tok.to_meta(),
        "vocab_size": tok.vocab_size,
        "dtype": dtype.name,
        "source_sha256": sha,
        "source_chars": len(text),
        "tokens": {split: len(arr) for split, arr in splits.items()},
        "train_fraction": TRAIN_FRACTION,
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").unlink(missing_ok=True)  # a damaged cache stays invalid until complete
        for split, arr in splits.items():
            atomic_write(folder / f"{split}.bin", arr.astype(dtype).tobytes())
        atomic_write(folder / "meta.json", json.dumps(meta, indent=1).encode("utf-8"))
    except OSError as e:
        raise UserError(
            f"cannot write token cache {folder}: {e.strerror or e}; set TUIGPT_CACHE_DIR to a writable directory"
        ) from e
