"""File primitives every layer shares: one atomic write (of a file, or of a set of files), one backwards line scan.
Reading files others made, bounded: :mod:`tuigpt.run.user_files`.

An atomic write goes to a temporary file in the same directory (``.NAME.XXXX.tmp``), is flushed and
fsynced, then renamed over the target, and the directory is fsynced: a crash at any moment leaves the
old file or the new one, never a torn one. The temporary name pattern is what
:func:`remove_stale_temp_files` recognises after a kill. A set of files (an export) is written into a temporary
folder and published in one step (:func:`atomic_folder`). Whatever a write has under way is a *leftover* until it
is done: a process that must end at once (a second ctrl+c) removes them first
(:func:`tuigpt.run.interrupts.remove_leftovers`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterator

from tuigpt.run.fmt import clip
from tuigpt.run.interrupts import forget_leftover, track_leftover

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
def _beside(path: Path) -> Iterator[tuple[int, Path]]:
    """A new temporary file beside ``path`` (``.NAME.XXXX.tmp``, born 0600, its fd open): a leftover while the block
    runs, removed when the block raises."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    track_leftover(tmp)
    try:
        yield fd, tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        forget_leftover(tmp)


@contextlib.contextmanager
def atomic_file(path: Path, open_mode: str = "wb", mode: int = 0o600) -> Iterator[IO]:
    """Write ``path`` through a temporary file that replaces it only when the block ends without error.

    Raising inside the block (a failed checksum, a full disk) leaves ``path`` as it was and removes
    the temporary file. The new file gets permission bits ``mode`` (the temporary file is born 0600).
    """
    path = Path(path)
    with _beside(path) as (fd, tmp):
        if mode != 0o600:
            os.fchmod(fd, mode)
        with os.fdopen(fd, open_mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_link(source: Path, path: Path) -> bool:
    """Make ``path`` the file ``source`` is (a hard link), replacing what ``path`` was atomically: the same bytes
    without writing them again. False where the file system makes no hard links (the caller writes instead);
    ``path`` is then untouched. Safe while ``source`` is only ever replaced by atomic writes (a rename gives it a
    new inode; the link keeps the old one)."""
    path = Path(path)
    with _beside(path) as (fd, tmp):
        os.close(fd)
        tmp.unlink()  # the unique name is what was wanted: the link takes it
        try:
            os.link(source, tmp)
        except OSError:
            return False
        os.replace(tmp, path)
    fsync_dir(path.parent)
    return True


def create_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a file that must not exist yet, atomically: FileExistsError when anything is at ``path`` by the time it
    is published (a file made meanwhile, a link, a dangling link), which is never replaced."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    track_leftover(tmp)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # EEXIST for anything at that name: the check and the write are one step
    finally:
        tmp.unlink(missing_ok=True)
        forget_leftover(tmp)
    fsync_dir(path.parent)


def rewrite_in_place(path: Path, data: bytes) -> str | None:
    """Replace the contents of an existing file the user named, keeping what makes it theirs: a symbolic link is
    followed (the real file is written, the link stays), the mode is kept, and so are hard links. A file with one
    link is replaced atomically (a crash leaves the old or the new text); a file with several links is written in
    place, which keeps them but is not atomic, after the new text was written beside it once (so a full disk fails
    before the file is touched). Returns a note saying so, or None."""
    real = Path(os.path.realpath(path))
    st = os.stat(real)
    if st.st_nlink == 1:
        atomic_write(real, data, mode=stat.S_IMODE(st.st_mode))
        return None
    atomic_write(real.with_name(f".{real.name}.new{TEMP_SUFFIX}"), data)  # room for it, proven first
    try:
        fd = os.open(real, os.O_WRONLY | os.O_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        real.with_name(f".{real.name}.new{TEMP_SUFFIX}").unlink(missing_ok=True)
    return (f"{path} has {st.st_nlink} hard links, so it was written in place to keep them (not atomically: the "
            f"same text is not kept elsewhere)")


# errors of a write that no choice of path fixes: no room, or a failing disk (exit 4, not 2)
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG)


def write_failure(exc: OSError, target: Path, fix: str) -> Exception:
    """The one-line error for an output that could not be written: CannotWrite (exit 4) when the disk is full or
    failing, UserError (exit 2) when the path itself is wrong (a file in the way, no permission, read-only)."""
    from tuigpt.run.errors import CannotWrite, UserError

    why = exc.strerror or str(exc)
    where = clip(str(getattr(exc, "filename", None) or target), 200)
    if exc.errno in NO_ROOM:
        return CannotWrite(f"cannot write {where} ({why}): nothing was written; free disk space and try again")
    return UserError(f"cannot write {where} ({why}): {fix}")


@contextlib.contextmanager
def atomic_folder(target: Path, mode: int = 0o700) -> Iterator[Path]:
    """A set of files that appear together or not at all: the block writes them into the folder it is given; when
    it ends without error they are fsynced and published in one step, and on any error nothing is left.

    A ``target`` that does not exist is made by renaming a temporary folder beside it (``.NAME.XXXX.tmp``) into
    place. Into a folder that exists, each file is hard-linked from a temporary folder inside it, and a name that
    exists by then (a file, a link, a dangling link) is never replaced: FileExistsError, and the files linked
    before it are taken back. ``mode``: the permission bits of a folder made here.
    """
    target = Path(target)
    existing = os.path.lexists(target)
    if existing and not target.is_dir():
        raise FileExistsError(errno.EEXIST, "a file is in the way of the output folder", str(target))
    made = _make_parents(target.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX,
                                    dir=target if existing else target.parent))
    except BaseException:
        _remove_empty(made)
        raise
    track_leftover(tmp)
    try:
        if not existing:
            os.chmod(tmp, mode)
        yield tmp
        for name in os.listdir(tmp):
            _fsync_file(tmp / name)
        fsync_dir(tmp)
        if existing:
            _link_all(tmp, target)
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, target)  # an empty folder made meanwhile is replaced; one with files: ENOTEMPTY
        fsync_dir(target if existing else target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(made)
        raise
    finally:
        forget_leftover(tmp)


def _link_all(source: Path, target: Path) -> None:
    linked: list[Path] = []
    try:
        for name in sorted(os.listdir(source)):
            os.link(source / name, target / name)  # EEXIST for anything at that name, a dangling link included
            linked.append(target / name)
    except BaseException:
        for path in linked:
            path.unlink(missing_ok=True)
        raise


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_parents(directory: Path) -> list[Path]:
    """Make ``directory`` and its missing parents; those made, deepest first (removed again on failure)."""
    missing = []
    while not os.path.lexists(directory) and directory.parent != directory:
        missing.append(directory)
        directory = directory.parent
    made: list[Path] = []
    try:
        for d in reversed(missing):
            d.mkdir()
            made.insert(0, d)
    except BaseException:
        _remove_empty(made)
        raise
    return made


def _remove_empty(directories: list[Path]) -> None:
    for d in directories:
        try:
            d.rmdir()
        except OSError:
            return


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
