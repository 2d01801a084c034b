"""Shared fixtures: the corpus and tiktoken cache the tests read (found or fetched once: support/corpus.py), and a
private tuigpt cache dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import corpus

REPO = Path(__file__).resolve().parents[1]
E2E = Path(__file__).resolve().parent / "e2e"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a session-wide private tuigpt cache and the tiktoken cache the tests found (an empty one
    when none was: tests that need GPT-2's BPE ask for ``gpt2_bpe`` and skip)."""
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(_session_cache(tmp_path_factory)))
    tiktoken = corpus.tiktoken_cache() or _session_cache(tmp_path_factory) / "no-tiktoken-files"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken))


_CACHE: list[Path] = []


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    if not _CACHE:
        _CACHE.append(factory.mktemp("tuigpt-cache"))
    return _CACHE[0]


@pytest.fixture
def shakespeare() -> Path:
    """Path to the tiny Shakespeare corpus (the same bytes the shakespeare_char dataset downloads); the test skips,
    saying how to provide it, where there is none."""
    return corpus.shakespeare()


@pytest.fixture
def gpt2_bpe() -> Path:
    """The tiktoken cache holding GPT-2's BPE files; the test skips, saying how to provide them, where there are none."""
    return corpus.gpt2_files()


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running `python -m tuigpt` in a subprocess, offline."""
    env = dict(os.environ)
    env["TUIGPT_CACHE_DIR"] = os.environ["TUIGPT_CACHE_DIR"]
    env["TIKTOKEN_CACHE_DIR"] = os.environ["TIKTOKEN_CACHE_DIR"]
    env["PYTHONUNBUFFERED"] = "1"
    return env


TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4, eval_iters=2, eval_interval=5,
            log_interval=1, max_iters=10, warmup_iters=2, dtype="float32", device="cpu", compile=False,
            telemetry_interval=0.0, num_threads=1)  # no dtype/compile trial: tests time nothing they do not test


@pytest.fixture
def tiny_config(tmp_path: Path, shakespeare: Path):
    """Factory of a very small TrainConfig writing under tmp_path (trains ~100 it/s on one core)."""
    from tuigpt.run.config import TrainConfig

    def make(**overrides):
        values = dict(TINY, run_name="tiny", out_dir=str(tmp_path / "runs"), data_path=str(shakespeare))
        values.update(overrides)
        return TrainConfig(**values)

    return make


@pytest.fixture
def tiny_yaml(tmp_path: Path, shakespeare: Path) -> Path:
    """A config file for the tiny model, for CLI tests."""
    import yaml

    path = tmp_path / "tiny.yaml"
    values = dict(TINY, out_dir=str(tmp_path / "runs"), data_path=str(shakespeare))
    path.write_text(yaml.safe_dump(values))
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/e2e/ (subprocesses, torchrun, tmux, signals) are the slow ones: marked by directory."""
    for item in items:
        if E2E in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
