"""llm.c and modded-nanogpt token shards (``dataset: shards``): ``*.bin`` files of GPT-2 token ids, each a 256 ×
int32 header (magic 20240520, version 1, token count) and then the tokens as uint16, as llm.c's
dev/data/data_common.py ``write_datafile`` writes them (fineweb_train_000001.bin, fineweb_val_000000.bin, …).

``data_path`` is a folder or a glob of shards; those with ``val`` in their name are the validation split, the rest
train. Every header is checked against the file before training (magic, version, the count against the size),
and the token ids at the start of each shard against the vocabulary. The shards are memory-mapped where they lie and
sampled as one sequence (:class:`ShardedTokens`), so a 10B-token dataset takes no memory.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from tuigpt.engine.data.tokenizer import TiktokenTokenizer, Tokenizer
from tuigpt.run.errors import UserError
from tuigpt.run.fmt import clip

MAGIC = 20240520  # llm.c's GPT-2 shards
LLAMA3_MAGIC = 20240801  # llm.c's LLaMA-3 shards (uint32 tokens, version 7)
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
CHECK_TOKENS = 1 << 20  # token ids checked against the vocabulary at the start of each shard
_VAL = re.compile(r"(^|[^a-z])val", re.IGNORECASE)  # fineweb_val_000000.bin, tiny_shakespeare_val.bin, val.bin


class ShardedTokens:
    """Several memory-mapped shards read as one sequence: ``len`` and integer-array indexing, which is all a
    :class:`~tuigpt.engine.data.sampler.BatchSampler` does (a window may run across two shards)."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        sizes = np.array([len(p) for p in parts], dtype=np.int64)
        self.ends = np.cumsum(sizes)
        self.starts = self.ends - sizes
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return int(self.ends[-1])

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        flat = np.asarray(index, dtype=np.int64).ravel()
        which = np.searchsorted(self.ends, flat, side="right")
        out = np.empty(flat.shape, dtype=self.dtype)
        for shard in np.unique(which):
            picked = which == shard
            out[picked] = self.parts[shard][flat[picked] - self.starts[shard]]
        return out.reshape(np.shape(index))


def open_shards(data_path: str, tokenizer: str) -> tuple[Any, Any, Tokenizer, str, str]:
    """(train, val, tokenizer, source, fingerprint) of a folder or glob of shards; UserError naming a bad one."""
    files = _shard_files(data_path)
    val_files = [f for f in files if _VAL.search(f.name)]
    train_files = [f for f in files if f not in val_files]
    for split, found in (("training", train_files), ("validation", val_files)):
        if not found:
            raise UserError(f"data_path {clip(data_path, 200)} has no {split} shard ({len(files)} .bin files, "
                            f"{'none' if split == 'validation' else 'all'} with 'val' in the name): llm.c and "
                            f"modded-nanogpt name them *_train_*.bin and *_val_*.bin")
    tok: Tokenizer = TiktokenTokenizer("gpt2" if tokenizer == "auto" else tokenizer)
    fingerprint = hashlib.sha256()
    splits = []
    for found in (train_files, val_files):
        parts = [_open_shard(path, tok) for path in found]
        for path, part in zip(found, parts):
            fingerprint.update(f"{path.name}:{len(part)}:".encode() + bytes(part[:4096]))
        splits.append(parts[0] if len(parts) == 1 else ShardedTokens(parts))
    n_train, n_val = len(splits[0]), len(splits[1])
    source = (f"{len(train_files)} train + {len(val_files)} val token shards from {clip(data_path, 120)} "
              f"({n_train:,} + {n_val:,} tokens)")
    return splits[0], splits[1], tok, source, fingerprint.hexdigest()


def _shard_files(data_path: str) -> list[Path]:
    path = Path(data_path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.glob("*.bin") if p.is_file())
    elif glob.has_magic(data_path):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(data_path)) if Path(p).is_file())
    elif path.is_file():
        raise UserError(f"data_path {clip(data_path, 200)} is one file: give the folder or a glob of the train and "
                        f"val shards (e.g. data/fineweb10B/fineweb_*.bin)")
    else:
        raise UserError(f"data_path {clip(data_path, 200)} does not exist (give a folder or a glob of .bin shards)")
    if not files:
        raise UserError(f"data_path {clip(data_path, 200)} holds no .bin shards")
    return files


def _open_shard(path: Path, tok: Tokenizer) -> np.ndarray:
    """The shard's tokens, memory-mapped, after its header is checked against the file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = np.frombuffer(f.read(HEADER_BYTES), dtype="<i4")
    except OSError as exc:
        raise UserError(f"cannot read shard {path}: {exc.strerror or exc}") from None
    if len(header) < HEADER_INTS:
        raise UserError(f"shard {path} is {size} bytes, shorter than the {HEADER_BYTES}-byte header: truncated or "
                        f"not an llm.c token shard")
    magic, version, count = (int(v) for v in header[:3])
    if magic == LLAMA3_MAGIC:
        raise UserError(f"shard {path} holds LLaMA-3 tokens (magic {magic}); tuigpt trains on GPT-2 token shards "
                        f"(magic {MAGIC}): write them with llm.c's GPT-2 tokenizer")
    if magic != MAGIC:
        raise UserError(f"shard {path} has magic number {magic}, not {MAGIC}: not an llm.c / modded-nanogpt token "
                        f"shard (or a damaged one)")
    if version != VERSION:
        raise UserError(f"shard {path} has header version {version}; tuigpt reads version {VERSION} (uint16 "
                        f"GPT-2 tokens)")
    held = (size - HEADER_BYTES) // 2
    if count <= 0 or held != count or (size - HEADER_BYTES) % 2:
        raise UserError(f"shard {path} header says {count:,} tokens but the file holds {held:,}"
                        f"{' and a half' if (size - HEADER_BYTES) % 2 else ''}: truncated or damaged; write it again")
    tokens = np.memmap(path, dtype=np.uint16, mode="r", offset=HEADER_BYTES, shape=(count,))
    head = tokens[:CHECK_TOKENS]
    if int(head.max()) >= tok.vocab_size:
        raise UserError(f"shard {path} holds token id {int(head.max())}, outside the {tok.vocab_size}-token "
                        f"vocabulary of {tok.name}: set tokenizer to the one that wrote it")
    return tokens
