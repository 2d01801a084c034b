"""Atomic, verified downloads: nothing partial is ever left at the destination."""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path

from tuigpt.run.errors import UserError
from tuigpt.run.files import atomic_file


class DownloadError(UserError):
    """A download failed; ``reason`` is the short cause ("HTTP 404 Not Found", "timed out", ...)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"could not download {url}: {reason}")
        self.url = url
        self.reason = reason


def download_file(url: str, dest: Path, sha256: str | None, timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically, checking length and sha256; DownloadError on any failure."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(dest) as out:  # raising inside leaves dest as it was and removes the partial file
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                expected = resp.headers.get("Content-Length")
                digest, size = hashlib.sha256(), 0
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            # http.client returns b"" rather than raising when the server closes early
            if expected is not None and size != int(expected):
                raise DownloadError(url, f"transfer cut short ({size} of {expected} bytes)")
            if sha256 is not None and digest.hexdigest() != sha256:
                raise DownloadError(url, f"sha256 mismatch (got {digest.hexdigest()[:16]}..., want {sha256[:16]}...)")
    except DownloadError:
        raise
    except BaseException as e:
        raise DownloadError(url, _reason(e, timeout)) from e
    return dest


def _reason(e: BaseException, timeout: float) -> str:
    """The short cause of a failed download; anything else (KeyboardInterrupt, a bug) is re-raised."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return "timed out" if isinstance(e.reason, TimeoutError) else str(e.reason)
    if isinstance(e, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(e, http.client.IncompleteRead):
        return "transfer cut short"
    if isinstance(e, (OSError, http.client.HTTPException, ValueError)):
        return f"{type(e).__name__}: {e}"
    raise e
