"""Shared fixtures: the offline corpus and tiktoken cache from ../shared, and a private cache dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHAKESPEARE = SHARED / "data" / "tinyshakespeare.txt"
TIKTOKEN_CACHE = SHARED / "data" / "tiktoken-cache"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a session-wide private tuigpt cache and the offline tiktoken cache."""
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(_session_cache(tmp_path_factory)))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))


_CACHE: list[Path] = []


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    if not _CACHE:
        _CACHE.append(factory.mktemp("tuigpt-cache"))
    return _CACHE[0]


@pytest.fixture
def shakespeare() -> Path:
    """Path to the tiny Shakespeare corpus (the same bytes the shakespeare_char dataset downloads)."""
    assert SHAKESPEARE.is_file(), f"missing {SHAKESPEARE}: tests need ../shared/data beside the repo"
    return SHAKESPEARE


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running `python -m tuigpt` in a subprocess, offline."""
    env = dict(os.environ)
    env["TUIGPT_CACHE_DIR"] = os.environ["TUIGPT_CACHE_DIR"]
    env["TIKTOKEN_CACHE_DIR"] = str(TIKTOKEN_CACHE)
    env["PYTHONUNBUFFERED"] = "1"
    return env
