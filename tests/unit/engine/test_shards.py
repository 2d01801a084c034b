"""llm.c / modded-nanogpt token shards: a folder or glob of them trains and resumes, windows run across shards as
across one sequence, and every bad shard (wrong magic, truncated, a count that does not match) is one line,
exit 2, with nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tuigpt.cli import main as cli
from tuigpt.engine.data import BatchSampler, load_dataset
from tuigpt.engine.data.shards import ShardedTokens
from tuigpt.run.errors import UserError
from tuigpt.run.metrics_log import read_metrics

from conftest import TINY
from support.shards import write_shard

VOCAB = 50257


def _shards(folder: Path, n_train: int = 3, tokens: int = 5_000, seed: int = 0) -> np.ndarray:
    """``n_train`` train shards and one val shard of random GPT-2 ids; every train token, in order."""
    rng = np.random.default_rng(seed)
    train = [rng.integers(0, VOCAB, tokens, dtype=np.int64) for _ in range(n_train)]
    for i, part in enumerate(train):
        write_shard(folder / f"fineweb_train_{i + 1:06d}.bin", part)
    write_shard(folder / "fineweb_val_000000.bin", rng.integers(0, VOCAB, tokens, dtype=np.int64))
    return np.concatenate(train)


def test_a_folder_of_shards_is_one_sequence_read_where_it_lies(tmp_path: Path) -> None:
    every = _shards(tmp_path / "fw", tokens=1_000)
    data = load_dataset("shards", str(tmp_path / "fw"))
    assert data.tokenizer.name == "gpt2" and isinstance(data.train, ShardedTokens)
    assert len(data.train) == 3_000 and len(data.val) == 1_000 and isinstance(data.val, np.memmap)
    windows = np.array([[0], [995], [1_998], [2_988]]) + np.arange(12)  # two of them cross a shard's end
    assert np.array_equal(data.train[windows], every[windows])
    assert np.array_equal(data.train[990:1_010], every[990:1_010])
    sampler = BatchSampler(data, block_size=16, batch_size=8)
    x, y = sampler.get_batch("train")
    starts = sampler.last_starts["train"].numpy()
    assert torch.equal(x, torch.from_numpy(every[starts[:, None] + np.arange(16)]))
    assert torch.equal(y[:, :-1], x[:, 1:])
    glob = load_dataset("shards", str(tmp_path / "fw" / "fineweb_*.bin"))
    assert glob.source_sha256 == data.source_sha256 and len(glob.train) == 3_000


def test_a_run_trains_from_shards_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _shards(tmp_path / "fw", n_train=2, tokens=4_000)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "dataset": "shards", "data_path": str(tmp_path / "fw"),
                                      "out_dir": str(tmp_path / "runs"), "run_name": "fw"}))
    assert cli.main([str(config), "--headless"]) == 0
    assert cli.main([str(config), "--headless", "--resume", "--max_iters=15"]) == 0
    out = capsys.readouterr().out
    assert "eval iter 15" in out
    records = read_metrics(tmp_path / "runs" / "fw" / "metrics.jsonl")
    assert [r["iter"] for r in records if r["type"] == "iter"] == list(range(1, 16))


def _bad(tmp_path: Path, name: str, **shard: object) -> Path:
    folder = tmp_path / name
    write_shard(folder / "x_val_000000.bin", np.arange(100))
    tokens = shard.pop("tokens", np.arange(100))
    path = write_shard(folder / "x_train_000001.bin", tokens, **shard)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: _bad(p, "magic", magic=20240521), "x_train_000001.bin has magic number 20240521, not 20240520: not an "
                                                  "llm.c / modded-nanogpt token shard"),
    (lambda p: _bad(p, "llama", magic=20240801, version=7), "holds LLaMA-3 tokens"),
    (lambda p: _bad(p, "version", version=2), "header version 2; tuigpt reads version 1"),
    (lambda p: _bad(p, "short", count=150), "header says 150 tokens but the file holds 100: truncated or damaged"),
    (lambda p: _bad(p, "long", count=60), "header says 60 tokens but the file holds 100"),
    (lambda p: _bad(p, "vocab", tokens=np.array([5, 60000, 7])), "holds token id 60000, outside the 50257-token"),
])
def test_a_bad_shard_is_one_line_exit_2_and_nothing_is_written(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                               make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "dataset": "shards", "data_path": str(path.parent),
                                      "out_dir": str(tmp_path / "runs"), "run_name": "bad"}))
    assert cli.main([str(config), "--headless"]) == 2
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: shard ") and message in lines[0], lines
    assert not (tmp_path / "runs" / "bad").exists()


def test_a_shard_cut_inside_its_header_and_folders_without_a_split_are_refused(tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    write_shard(cut / "a_val.bin", np.arange(100))
    (cut / "a_train.bin").write_bytes(np.zeros(10, "<i4").tobytes())
    with pytest.raises(UserError, match=r"a_train.bin is 40 bytes, shorter than the 1024-byte header"):
        load_dataset("shards", str(cut))
    only_train = tmp_path / "only_train"
    write_shard(only_train / "fineweb_train_000001.bin", np.arange(100))
    with pytest.raises(UserError, match="has no validation shard .* \\*_train_\\*.bin and \\*_val_\\*.bin"):
        load_dataset("shards", str(only_train))
    with pytest.raises(UserError, match="holds no .bin shards"):
        (tmp_path / "empty").mkdir()
        load_dataset("shards", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="is one file: give the folder or a glob"):
        load_dataset("shards", str(only_train / "fineweb_train_000001.bin"))
    with pytest.raises(UserError, match="needs data_path"):
        load_dataset("shards")
