"""Hugging Face datasets (``dataset: hf``): one text column tokenized once into the token cache.

Where the dataset comes from: ``hf_name``, a dataset on the Hub as the local Hugging Face cache holds it (or a
local folder of its files: json, csv, parquet, txt), read with ``datasets.load_dataset``; or ``data_path``, a
dataset saved with ``save_to_disk``, read with ``datasets.load_from_disk``. Both are Arrow files the datasets
package memory-maps; the text is read a batch of rows at a time, so a dataset larger than memory tokenizes.

Documents are joined as nanoGPT's openwebtext/prepare.py joins them: each one's BPE tokens followed by the
encoding's end-of-text token; with characters, a newline between documents. The cache is keyed by the datasets'
own fingerprints (which change with their content), the split, the column and the tokenizer, so a second run reads
the tokens at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tuigpt.engine.data.cache import open_cache, write_cache
from tuigpt.engine.data.tokenizer import CharTokenizer, TiktokenTokenizer, Tokenizer
from tuigpt.run.errors import UserError
from tuigpt.run.fmt import clip
from tuigpt.run.paths import cache_dir

ROWS_PER_BATCH = 1024  # rows read and encoded at a time


@dataclass(frozen=True)
class HfSpec:
    """Which dataset, split and column (the config's hf_* keys)."""

    name: str | None
    subset: str | None = None
    split: str = "train"
    val_split: str | None = None
    text_field: str = "text"


@dataclass(frozen=True)
class Splits:
    """The splits to tokenize (val None: the last 10% of train's tokens), what they are, and their identity."""

    train: Any
    val: Any
    source: str
    fingerprint: str


def load_hf(spec: HfSpec, data_path: str | None, tok_name: str) -> tuple[np.ndarray, np.ndarray, Tokenizer, str, str]:
    """(train, val, tokenizer, source, fingerprint): the cached tokens, made on first use."""
    opened = open_hf(spec, data_path)
    key = hashlib.sha256(json.dumps([opened.fingerprint, spec.text_field, tok_name]).encode()).hexdigest()
    folder = cache_dir() / "tokens" / f"hf-{tok_name}-{key[:16]}"
    cached = open_cache(folder, key, tok_name)
    if cached is None:
        tok: Tokenizer = TiktokenTokenizer(tok_name) if tok_name != "char" else CharTokenizer(_chars(opened, spec))
        val = None if opened.val is None else _tokens(opened.val, spec.text_field, tok)
        write_cache(folder, tok, _tokens(opened.train, spec.text_field, tok), val, key,
                    {"source": opened.source, "rows": {"train": opened.train.num_rows,
                                                       "val": None if opened.val is None else opened.val.num_rows}})
        cached = open_cache(folder, key, tok_name)
        if cached is None:
            raise UserError(f"token cache {folder} could not be read back after writing it; check the disk")
    train, val, tok = cached
    return train, val, tok, opened.source, key


def open_hf(spec: HfSpec, data_path: str | None) -> Splits:
    """The dataset's train and val splits, checked to hold a text column; UserError naming what to fix."""
    datasets = _datasets()
    if spec.name is None and data_path is None:
        raise UserError("dataset: hf needs hf_name (a dataset in the Hugging Face cache, or a folder of its files) "
                        "or data_path (a dataset saved with save_to_disk)")
    if spec.name is not None and data_path is not None:
        raise UserError(f"dataset: hf takes hf_name or data_path, not both (hf_name={clip(spec.name, 80)}, "
                        f"data_path={clip(data_path, 80)}): leave one empty")
    if data_path is not None:
        splits = _from_disk(datasets, Path(data_path).expanduser(), spec)
        where = f"data_path {clip(data_path, 200)}"
    else:
        splits = _from_cache(datasets, spec)
        where = f"hf_name {clip(str(spec.name), 200)}"
    train, val = splits
    for split, part in ((spec.split, train), (spec.val_split, val)):
        if part is not None:
            _check_text(part, spec.text_field, f"{where} split {split}")
    source = (f"Hugging Face dataset {spec.name or data_path}{f' ({spec.subset})' if spec.subset else ''}, "
              f"split {spec.split}" + (f", val split {spec.val_split}" if spec.val_split else ""))
    fingerprint = ":".join(str(getattr(part, "_fingerprint", None)) + f"/{part.num_rows}"
                           for part in (train, val) if part is not None)
    return Splits(train, val, source, fingerprint)


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise UserError("dataset: hf needs the datasets package: pip install 'tuigpt[hf]' (or pip install datasets)"
                        ) from None
    datasets.disable_progress_bars()  # their bars would fill the terminal the run's first lines go to
    return datasets


def _from_disk(datasets: Any, path: Path, spec: HfSpec) -> tuple[Any, Any]:
    if not (path / "dataset_info.json").is_file() and not (path / "dataset_dict.json").is_file():
        raise UserError(f"data_path {clip(str(path), 200)} is not a dataset saved with save_to_disk (it has no "
                        f"dataset_info.json or dataset_dict.json); for a folder of json/csv/parquet files use "
                        f"hf_name={clip(str(path), 200)}")
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # the package raises many kinds on a damaged folder
        raise UserError(f"data_path {clip(str(path), 200)} could not be read as a saved dataset "
                        f"({type(exc).__name__}: {clip(str(exc), 160)})") from None
    if isinstance(loaded, datasets.DatasetDict):
        return _pick(loaded, spec, f"data_path {clip(str(path), 200)}")
    if spec.val_split is not None:
        raise UserError(f"data_path {clip(str(path), 200)} holds one split, not several: leave hf_val_split empty")
    return loaded, None


def _from_cache(datasets: Any, spec: HfSpec) -> tuple[Any, Any]:
    try:
        loaded = datasets.load_dataset(spec.name, spec.subset)
    except Exception as exc:  # offline, not cached, no such dataset or subset: the package's own words
        home = os.environ.get("HF_HOME") or "~/.cache/huggingface"
        args = repr(spec.name) + (f", {spec.subset!r}" if spec.subset else "")
        raise UserError(f"hf_name {clip(str(spec.name), 120)} could not be loaded ({type(exc).__name__}: "
                        f"{clip(str(exc), 160)}); offline, tuigpt reads what the Hugging Face cache ({home}) holds: "
                        f"fetch it once where there is a network with: python -c \"import datasets; "
                        f"datasets.load_dataset({args})\"") from None
    return _pick(loaded, spec, f"hf_name {clip(str(spec.name), 200)}")


def _pick(splits: Any, spec: HfSpec, where: str) -> tuple[Any, Any]:
    names = list(splits)
    for key, split in (("hf_split", spec.split), ("hf_val_split", spec.val_split)):
        if split is not None and split not in names:
            raise UserError(f"{where} has no split {split!r} (it has {', '.join(names)}): set {key}")
    return splits[spec.split], splits[spec.val_split] if spec.val_split is not None else None


def _check_text(part: Any, field: str, where: str) -> None:
    columns = list(part.column_names)
    if field not in columns:
        raise UserError(f"{where} has no column {field!r} (its columns: {clip(', '.join(columns), 160)}): set "
                        f"hf_text_field")
    dtype = getattr(part.features[field], "dtype", None)
    if dtype not in ("string", "large_string"):
        raise UserError(f"{where} column {field!r} holds {dtype or type(part.features[field]).__name__}, not text: "
                        f"set hf_text_field to a text column")
    if part.num_rows == 0:
        raise UserError(f"{where} has no rows")


def _texts(part: Any, field: str) -> Iterator[list[str]]:
    for batch in part.select_columns([field]).iter(batch_size=ROWS_PER_BATCH):
        yield [text or "" for text in batch[field]]


def _tokens(part: Any, field: str, tok: Tokenizer) -> Iterator[np.ndarray]:
    eot = tok.eot_token
    for texts in _texts(part, field):
        if eot is None:  # characters: a newline between documents
            yield tok.encode_array("".join(text + "\n" for text in texts))
        else:
            ids = tok.encode_batch(texts)
            yield np.fromiter((i for doc in ids for i in (*doc, eot)), dtype=np.int64,
                              count=sum(len(doc) + 1 for doc in ids))


def _chars(opened: Splits, spec: HfSpec) -> str:
    """The character vocabulary of every split (a first pass over the text)."""
    chars: set[str] = {"\n"}
    for part in (opened.train, opened.val):
        if part is not None:
            for texts in _texts(part, spec.text_field):
                chars.update(*texts)
    return "".join(sorted(chars))
