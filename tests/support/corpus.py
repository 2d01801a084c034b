"""The files the tests read: tiny Shakespeare (what every test run trains on) and tiktoken's GPT-2 BPE files.

Looked for in this order:

1. ``../shared/data`` beside the repository (CI and the team's machines);
2. ``$TUIGPT_TEST_DATA``: a folder laid out the same way (``tinyshakespeare.txt``, ``tiktoken-cache/`` with the
   files of tiktoken's ``gpt2`` and ``r50k_base`` encodings);
3. a per-user cache, ``$XDG_CACHE_HOME/tuigpt-test-data`` (``~/.cache/...``), filled once from the internet when it
   is reachable: the corpus checked against its sha256, the BPE files by tiktoken against its own hashes.

With none of them, a test that needs a file skips, saying which file and how to provide it; nothing waits on a
network that is not there (each download gets DOWNLOAD_TIMEOUT seconds, once per session).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHAKESPEARE_NAME = "tinyshakespeare.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TIKTOKEN_DIR = "tiktoken-cache"
# tiktoken's GPT-2 files (the gpt2 and r50k_base encodings) and their sha256 (tiktoken_ext/openai_public.py); a
# cache names each by the sha1 of its URL
GPT2_FILES = {
    "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken":
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe":
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json":
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}
DOWNLOAD_TIMEOUT = 20.0
WHERE = ("in ../shared/data beside the repository or in a folder named by TUIGPT_TEST_DATA, or run the tests once "
         "with internet access (the files are then kept in ~/.cache/tuigpt-test-data)")
FIX = {"shakespeare": f"put {SHAKESPEARE_NAME} {WHERE}",
       "tiktoken": f"put a {TIKTOKEN_DIR}/ holding tiktoken's gpt2 and r50k_base files {WHERE}"}

_found: dict[str, Path | None] = {}
_why: dict[str, str] = {}


def candidates() -> list[Path]:
    """The data folders, in the order they are tried."""
    folders = [REPO.parent / "shared" / "data"]
    if os.environ.get("TUIGPT_TEST_DATA"):
        folders.append(Path(os.environ["TUIGPT_TEST_DATA"]).expanduser())
    return folders + [cache_folder()]


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tuigpt-test-data"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download(url: str, sha256: str, target: Path) -> str | None:
    """Fetch ``url`` into ``target`` if its sha256 matches (written whole or not at all); why not, or None."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
            data = response.read()
    except OSError as exc:
        return f"could not be downloaded ({exc})"
    if hashlib.sha256(data).hexdigest() != sha256:
        return f"the copy downloaded from {url} failed its sha256 check"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, target)  # never a torn file where the next session looks
    return None


def _find_shakespeare() -> Path | None:
    for folder in candidates():
        path = folder / SHAKESPEARE_NAME
        if path.is_file() and _sha256(path) == SHAKESPEARE_SHA256:
            return path
    target = cache_folder() / SHAKESPEARE_NAME
    failed = _download(SHAKESPEARE_URL, SHAKESPEARE_SHA256, target)
    if failed is not None:
        _why["shakespeare"] = f"no {SHAKESPEARE_NAME} was found, and it {failed}"
        return None
    return target


def _gpt2_loads(folder: Path) -> bool:
    """Whether tiktoken's GPT-2 encoding loads from the files in ``folder``."""
    import tiktoken
    import tiktoken.registry

    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    try:
        tiktoken.registry.ENCODINGS.pop("gpt2", None)  # a load from another folder is not kept
        tiktoken.get_encoding("gpt2")
        return True
    except Exception:  # noqa: BLE001 - a file missing or damaged: not usable
        return False
    finally:
        tiktoken.registry.ENCODINGS.pop("gpt2", None)
        if old is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old


def _find_tiktoken() -> Path | None:
    for folder in candidates()[:-1]:
        if (folder / TIKTOKEN_DIR).is_dir():
            return folder / TIKTOKEN_DIR
    cached = cache_folder() / TIKTOKEN_DIR
    for url, sha256 in GPT2_FILES.items():
        target = cached / hashlib.sha1(url.encode()).hexdigest()
        if not (target.is_file() and _sha256(target) == sha256):
            if (failed := _download(url, sha256, target)) is not None:
                _why["tiktoken"] = f"tiktoken's file {url.rsplit('/', 1)[1]} was not found, and it {failed}"
                return None
    if not _gpt2_loads(cached):
        _why["tiktoken"] = f"tiktoken's GPT-2 files in {cached} do not load"
        return None
    return cached


def shakespeare_path() -> Path | None:
    """The corpus, found or downloaded once; None when neither worked (:func:`shakespeare` skips then)."""
    if "shakespeare" not in _found:
        _found["shakespeare"] = _find_shakespeare()
    return _found["shakespeare"]


def shakespeare() -> Path:
    """The corpus; the calling test skips, saying why and what to do, when there is none."""
    path = shakespeare_path()
    if path is None:
        pytest.skip(f"{_why['shakespeare']}: {FIX['shakespeare']}")
    return path


def tiktoken_cache() -> Path | None:
    """A tiktoken cache holding the GPT-2 files, or None (tests that need GPT-2 BPE skip: :func:`gpt2_files`)."""
    if "tiktoken" not in _found:
        _found["tiktoken"] = _find_tiktoken()
    return _found["tiktoken"]


def gpt2_files() -> Path:
    """The tiktoken cache with the GPT-2 files; the calling test skips when there is none."""
    path = tiktoken_cache()
    if path is None:
        pytest.skip(f"{_why['tiktoken']}: {FIX['tiktoken']}")
    return path
