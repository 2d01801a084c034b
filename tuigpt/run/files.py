"""File primitives every layer shares: one atomic write, one backwards line scan.

An atomic write goes to a temporary file in the same directory (``.NAME.XXXX.tmp``), is flushed and
fsynced, then renamed over the target, and the directory is fsynced: a crash at any moment leaves the
old file or the new one, never a torn one. The temporary name pattern is what
:func:`remove_stale_temp_files` recognises after a kill.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterator

from tuigpt.run.fmt import clip

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
def atomic_file(path: Path, open_mode: str = "wb", mode: int = 0o600) -> Iterator[IO]:
    """Write ``path`` through a temporary file that replaces it only when the block ends without error.

    Raising inside the block (a failed checksum, a full disk) leaves ``path`` as it was and removes
    the temporary file. The new file gets permission bits ``mode`` (the temporary file is born 0600).
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        if mode != 0o600:
            os.fchmod(fd, mode)
        with os.fdopen(fd, open_mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_file(path, mode=mode) as f:
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


def append_text(path: Path, text: str, mode: int = 0o600) -> bool:
    """Append to a log file (made with ``mode``); False when it cannot be written (a log must never fail a run)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(text)
        return True
    except OSError:
        return False


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
    from tuigpt.run.errors import UserError

    shown = clip(str(path), 200)
    st = stat_regular(path, what, fix)
    if max_bytes is not None and st.st_size > max_bytes:
        raise UserError(f"{what} {shown} is {st.st_size:,} bytes, more than the {max_bytes:,} a {what} may be: {fix}")
    try:
        with open_regular(path) as f:
            raw = f.read() if max_bytes is None else f.read(max_bytes + 1)
    except OSError as exc:
        raise UserError(f"cannot read {what} {shown}: {exc.strerror or exc}") from None
    if max_bytes is not None and len(raw) > max_bytes:
        raise UserError(f"{what} {shown} is more than the {max_bytes:,} bytes a {what} may be: {fix}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {shown} is not UTF-8 text (bad byte at offset {exc.start}): {fix}") from None


def open_regular(path: Path) -> IO[bytes]:
    """Open a file for reading only if it is a regular file: a FIFO swapped in since a stat must not block the
    open (O_NONBLOCK) nor be read (OSError ENXIO-like "not a regular file")."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file (a pipe or a device)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def stat_regular(path: Path, what: str, fix: str) -> os.stat_result:
    """The stat of a file the user named, which must be a regular file (not a FIFO, a device, a directory, or a
    path too long); a one-line UserError otherwise."""
    from tuigpt.run.errors import UserError

    shown = clip(str(path), 200)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{what} {shown} does not exist: {fix}") from None
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, EACCES; ValueError: a NUL byte
        raise UserError(f"cannot read {what} {shown}: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{what} {shown} is a directory: {fix}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{what} {shown} is not a regular file (a pipe or a device): {fix}")
    return st
