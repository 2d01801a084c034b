"""Encoded splits on disk: raw uint16/uint32 train.bin and val.bin, described by meta.json (written last)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np

from tuigpt.engine.data.tokenizer import Tokenizer
from tuigpt.run.errors import UserError
from tuigpt.run.files import atomic_file, atomic_write
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
    """Encode ``text`` and write train.bin (its first 90% of tokens), val.bin, then meta.json."""
    write_cache(folder, tok, [tok.encode_array(text)], None, sha, {"source_chars": len(text)})


def write_cache(folder: Path, tok: Tokenizer, train: Iterable[np.ndarray], val: Iterable[np.ndarray] | None,
                sha: str, about: dict[str, Any]) -> None:
    """Stream token arrays into train.bin and val.bin, then meta.json (last: it marks the cache complete). With no
    ``val``, val.bin is the last 10% of ``train``'s tokens. Memory holds one piece at a time, not the dataset."""
    dtype = np.dtype(np.uint16 if tok.vocab_size < 65536 else np.uint32)
    counts: dict[str, int] = {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").unlink(missing_ok=True)  # a damaged cache stays invalid until complete
        with atomic_file(folder / "train.bin", "w+b") as f:
            counts["train"] = _write_pieces(f, train, dtype)
            if val is None:  # the tail moves to val.bin, then train.bin is cut where it began
                n_train = int(counts["train"] * TRAIN_FRACTION)
                f.seek(n_train * dtype.itemsize)
                with atomic_file(folder / "val.bin") as out:
                    while block := f.read(1 << 24):
                        out.write(block)
                f.truncate(n_train * dtype.itemsize)
                counts = {"train": n_train, "val": counts["train"] - n_train}
        if val is not None:
            with atomic_file(folder / "val.bin") as out:
                counts["val"] = _write_pieces(out, val, dtype)
        meta = {"version": _CACHE_VERSION, "tokenizer": tok.to_meta(), "vocab_size": tok.vocab_size,
                "dtype": dtype.name, "source_sha256": sha, **about, "tokens": counts, "train_fraction": TRAIN_FRACTION}
        atomic_write(folder / "meta.json", json.dumps(meta, indent=1).encode("utf-8"))
    except OSError as e:
        raise UserError(
            f"cannot write token cache {folder}: {e.strerror or e}; set TUIGPT_CACHE_DIR to a writable directory"
        ) from e


def _write_pieces(f: IO[bytes], pieces: Iterable[np.ndarray], dtype: np.dtype) -> int:
    n = 0
    for piece in pieces:
        f.write(piece.astype(dtype).tobytes())
        n += len(piece)
    return n
