"""Atomic, verified downloads: nothing partial is ever left at the destination."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tuigpt.errors import UserError


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
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise DownloadError(url, f"cannot write to {dest.parent}: {e.strerror or e}") from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
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
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, DownloadError):
            raise
        if isinstance(e, urllib.error.HTTPError):
            reason = f"HTTP {e.code} {e.reason}"
        elif isinstance(e, urllib.error.URLError):
            reason = "timed out" if isinstance(e.reason, TimeoutError) else str(e.reason)
        elif isinstance(e, TimeoutError):
            reason = f"timed out after {timeout:g} s"
        elif isinstance(e, http.client.IncompleteRead):
            reason = "transfer cut short"
        elif isinstance(e, (OSError, http.client.HTTPException, ValueError)):
            reason = f"{type(e).__name__}: {e}"
        else:
            raise  # KeyboardInterrupt and real bugs keep their traceback
        raise DownloadError(url, reason) from e
    return dest
