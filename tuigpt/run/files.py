"""File primitives every layer shares: one atomic write, one backwards line scan.

An atomic write goes to a temporary file in the same directory (``.NAME.XXXX.tmp``), is flushed and
fsynced, then renamed over the target, and the directory is fsynced: a crash at any moment leaves the
old file or the new one, never a torn one. The temporary name pattern is what
:func:`remove_stale_temp_files` recognises after a kill.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

TEMP_SUFFIX = ".tmp"


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Write ``path`` through a temporary file that replaces it only when the block ends without error.

    Raising inside the block (a failed checksum, a full disk) leaves ``path`` as it was and removes
    the temporary file.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_file(path) as f:
        f.write(data)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s lock file (``NAME.lock`` beside it) for a read-change-replace of a small
    shared file, so two processes updating it at once both keep their change."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): a lost race only loses one update
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def remove_stale_temp_files(directory: Path, name: str) -> int:
    """Remove what an interrupted atomic write of ``directory/name`` left behind; returns how many."""
    removed = 0
    for stale in Path(directory).glob(f".{name}.*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed


def lines_backwards(f: IO[bytes], end: int, block: int = 1 << 16) -> Iterator[tuple[int, bytes]]:
    """(start offset, line without its newline) of the lines in ``f[:end]``, last first.

    ``f[:end]`` must end with a newline (or be empty); a file is read in ``block``-sized pieces
    from the end, so the cost is what is read, not the file's size.
    """
    pos, buf = end, b""  # buf holds f[pos:pos + len(buf)]; its lines not yet yielded end at `limit`
    limit = 0
    while True:
        if pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf[:limit]
            limit = len(buf)
        while limit > 0:
            start = buf.rfind(b"\n", 0, limit - 1) + 1  # limit - 1 is this line's own newline
            if start == 0 and pos > 0:
                break  # the line may begin in an earlier block
            yield pos + start, buf[start:limit - 1]
            limit = start
        if pos == 0 and limit == 0:
            return


def complete_prefix(f: IO[bytes], end: int, block: int = 1 << 16) -> int:
    """Where the last complete line of ``f[:end]`` ends: a torn last line (no newline yet) is excluded."""
    pos = end
    while pos > 0:
        step = min(block, pos)
        f.seek(pos - step)
        chunk = f.read(step)
        k = chunk.rfind(b"\n")
        if k >= 0:
            return pos - step + k + 1
        pos -= step
    return 0


def repair_torn_tail(path: Path) -> None:
    """Cut a last line that a crash left without its newline, so appends start on a fresh line."""
    try:
        f = open(path, "rb+")
    except FileNotFoundError:
        return
    with f:
        end = f.seek(0, os.SEEK_END)
        keep = complete_prefix(f, end)
        if keep != end:
            f.truncate(keep)


def read_user_text(path: Path, what: str, fix: str, max_bytes: int | None = None) -> str:
    """A user's text file (config, data), strictly UTF-8; every way it can be unusable is a one-line UserError.

    Only regular files are read: a FIFO would block forever and /dev/zero never ends. ``what`` names the file in
    errors ("config file", "data file"); ``fix`` says what to give instead.
    """
    import stat

    from tuigpt.run.errors import UserError

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist: {fix}") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{what} {path} is a directory: {fix}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{what} {path} is not a regular file (a pipe or a device): {fix}")
    if max_bytes is not None and st.st_size > max_bytes:
        raise UserError(f"{what} {path} is {st.st_size:,} bytes, more than the {max_bytes:,} a {what} may be: {fix}")
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path} is not UTF-8 text (bad byte at offset {exc.start}): {fix}") from None
