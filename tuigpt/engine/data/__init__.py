"""Datasets, tokenizers, token caches and batches.

A dataset is text (tiny Shakespeare, downloaded once, the user's own files, or a Hugging Face dataset's text
column) encoded once into ``cache_dir()/tokens/<dataset>-<tokenizer>-<sha256[:16]>/`` and memory-mapped from
there, or token ids someone else wrote, memory-mapped where they are: a folder of nanoGPT's train.bin/val.bin
(dataset ``nanogpt``) or llm.c / modded-nanogpt shards (dataset ``shards``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuigpt.engine.data.cache import TRAIN_FRACTION, build_cache, open_cache
from tuigpt.engine.data.download import DownloadError, download_file
from tuigpt.engine.data.hf_datasets import HfSpec, load_hf
from tuigpt.engine.data.nanogpt import open_bins
from tuigpt.engine.data.sampler import BatchSampler
from tuigpt.engine.data.shards import open_shards
from tuigpt.engine.data.text import read_text, resolve_paths
from tuigpt.engine.data.tokenizer import (
    CharTokenizer,
    TiktokenTokenizer,
    Tokenizer,
    check_tokenizer_name,
    did_you_mean,
    tiktoken_names,
)
from tuigpt.run.config import TrainConfig
from tuigpt.run.errors import UserError
from tuigpt.run.paths import cache_dir

__all__ = [
    "DATASETS",
    "SHAKESPEARE_URL",
    "TRAIN_FRACTION",
    "BatchSampler",
    "CharTokenizer",
    "DownloadError",
    "HfSpec",
    "TiktokenTokenizer",
    "TokenData",
    "Tokenizer",
    "download_file",
    "load_config_data",
    "load_dataset",
    "shakespeare_path",
    "tiktoken_names",
]

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_URL_ENV = "TUIGPT_SHAKESPEARE_URL"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_BYTES = 1_115_394

# dataset name -> its default tokenizer; "text" is the user's own data_path; "nanogpt" a folder of nanoGPT's
# train.bin/val.bin (its tokenizer: the folder's meta.pkl, else gpt2); "hf" a Hugging Face dataset (hf_* keys);
# "shards" llm.c / modded-nanogpt .bin shards (GPT-2 tokens)
DATASETS = {"shakespeare_char": "char", "shakespeare": "gpt2", "text": "char", "nanogpt": "auto", "hf": "gpt2",
            "shards": "gpt2"}


@dataclass
class TokenData:
    """A dataset's train and val tokens (memory-mapped; several shards are a ShardedTokens, read the same way)
    and the tokenizer that made them."""

    train: np.ndarray
    val: np.ndarray
    tokenizer: Tokenizer
    dataset: str
    source: str
    source_sha256: str

    def bytes_per_token(self, sample: int = 1 << 20) -> float | None:
        """The UTF-8 bytes a training token spells on average (end-of-text: none), over the split's first
        ``sample`` tokens: what turns a loss per token into bits per byte (run.numbers.loss_in_bits_per_byte)."""
        head = np.asarray(self.train[:sample], dtype=np.int64)
        return float(self.tokenizer.token_bytes()[head].mean()) if len(head) else None

    def check_block_size(self, block_size: int) -> None:
        """UserError unless both splits hold more than ``block_size + 1`` tokens."""
        n_train, n_val = len(self.train), len(self.val)
        if min(n_train, n_val) > block_size + 1:
            return
        largest = min(n_train, n_val) - 2
        fix = f"use block_size <= {largest} or more text" if largest >= 1 else "use more text"
        raise UserError(
            f"block_size={block_size} is too large for dataset {self.dataset} ({self.source}): "
            f"train has {n_train} tokens, val has {n_val}, and each needs more than block_size+1; {fix}"
        )


def shakespeare_path() -> Path:
    """Where tiny Shakespeare lives once downloaded (a user may also put it there by hand)."""
    return cache_dir() / "data" / "tinyshakespeare.txt"


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _ensure_shakespeare() -> Path:
    path = shakespeare_path()
    if _file_sha256(path) == SHAKESPEARE_SHA256:
        return path
    note = f"; the file at {path} has the wrong sha256" if path.exists() else ""
    url = os.environ.get(SHAKESPEARE_URL_ENV) or SHAKESPEARE_URL
    try:
        return download_file(url, path, SHAKESPEARE_SHA256)
    except DownloadError as e:
        raise UserError(
            f"could not download tiny Shakespeare from {url} ({e.reason}{note}): "
            f"put the file at {path} or pass --data_path=FILE"
        ) from e


def load_config_data(config: TrainConfig) -> TokenData:
    """The tokens a config trains on."""
    hf = HfSpec(config.hf_name, config.hf_subset, config.hf_split, config.hf_val_split, config.hf_text_field)
    return load_dataset(config.dataset, config.data_path, config.tokenizer, hf)


def load_dataset(dataset: str, data_path: str | None = None, tokenizer: str = "auto",
                 hf: HfSpec | None = None) -> TokenData:
    """Load ``dataset``'s tokens, downloading and encoding on first use; UserError on any bad input."""
    if dataset not in DATASETS:
        valid = list(DATASETS)
        raise UserError(f"unknown dataset {dataset!r}{did_you_mean(dataset, valid)}; valid: {', '.join(valid)}")
    if dataset == "hf":
        tok_name = DATASETS[dataset] if tokenizer == "auto" else tokenizer
        check_tokenizer_name(tok_name)
        train, val, tok, source, key = load_hf(hf or HfSpec(None), data_path, tok_name)
        return TokenData(train, val, tok, dataset, source, key)
    if dataset == "shards":
        if not data_path:
            raise UserError("dataset=shards needs data_path=DIR or GLOB of llm.c / modded-nanogpt .bin token shards")
        if tokenizer != "auto":
            check_tokenizer_name(tokenizer)
        train, val, tok, source, fingerprint = open_shards(data_path, tokenizer)
        return TokenData(train, val, tok, dataset, source, fingerprint)
    if dataset == "nanogpt":
        if not data_path:
            raise UserError("dataset=nanogpt needs data_path=DIR, the folder holding nanoGPT's train.bin and val.bin")
        if tokenizer != "auto":
            check_tokenizer_name(tokenizer)
        train, val, tok, fingerprint = open_bins(Path(data_path).expanduser(), tokenizer)
        return TokenData(train, val, tok, dataset, f"nanoGPT data {data_path}", fingerprint)
    tok_name = DATASETS[dataset] if tokenizer == "auto" else tokenizer
    check_tokenizer_name(tok_name)  # before any download
    if data_path:
        files = resolve_paths(str(data_path))
        source = str(files[0]) if len(files) == 1 else f"{len(files)} files from {data_path}"
    elif dataset == "text":
        raise UserError("dataset=text needs data_path=FILE, DIR or GLOB pointing at your UTF-8 text")
    else:
        files = [_ensure_shakespeare()]
        source = f"tiny Shakespeare ({files[0]})"
    text = read_text(files, f"data_path {data_path}" if data_path else str(files[0]))
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    tok = None if tok_name == "char" else TiktokenTokenizer(tok_name)  # offline errors surface here
    folder = cache_dir() / "tokens" / f"{dataset}-{tok_name}-{sha[:16]}"
    opened = open_cache(folder, sha, tok_name)
    if opened is None:
        build_cache(folder, tok or CharTokenizer.from_text(text), text, sha)
        opened = open_cache(folder, sha, tok_name)
        if opened is None:
            raise UserError(f"token cache {folder} could not be read back after writing it; check the disk")
    train, val, tok = opened
    return TokenData(train, val, tok, dataset, source, sha)
