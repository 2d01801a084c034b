"""Token shards written from llm.c's documented layout (dev/data/data_common.py write_datafile): a header of 256
little-endian int32 (magic 20240520, version 1, token count, then zeros), then the tokens as uint16."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_shard(path: Path, tokens: np.ndarray, magic: int = 20240520, version: int = 1,
                count: int | None = None) -> Path:
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = magic, version, len(tokens) if count is None else count
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes())
    return path
