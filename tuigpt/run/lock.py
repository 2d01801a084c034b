"""One writer per run directory: an OS lock (``flock``) on the run directory itself, held while a process trains there.

A second start of the same run, a ``--resume`` of a run that is still going, and the clean-up a start does
(stale temp files, cutting metrics.jsonl) all need the lock first, so they refuse while another process holds
it. The kernel drops a flock when its process ends, however it ends: a crash or ``kill -9`` leaves no stale
lock. The lock is on the directory, not on a file in it: a file can be deleted from under the run that holds its
lock (``rm run.lock``), after which a second start would lock a new file of the same name and both would write;
the directory cannot be swapped that way while the run is in it. ``run.lock`` holds the holder's PID for the
message a second start prints; a clean release removes it. Where directories cannot be locked (some network file
systems), the lock is taken on ``run.lock`` as before.

Taking the lock is also the first write into the run directory, so it is where an unusable ``out_dir`` (a
file, read-only, full, a path too long) is found, as a UserError, before anything else is written.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from pathlib import Path

from tuigpt.run.errors import UserError
from tuigpt.run.interrupts import claim, holding, unclaim
from tuigpt.run.rundir import LOCK_FILE, METRICS_FILE

RETRY_SECONDS = 0.2  # a `tuigpt runs` probe holds a shared lock for microseconds: a start retries past it
# filesystems without flock (or, EBADF, without flock on a directory opened for reading: NFS emulates flock with
# byte-range locks, which need a descriptor open for writing)
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EBADF)


class RunLock:
    """The held lock of one run directory; :meth:`release` (or the process's end) gives it back."""

    def __init__(self, run_dir: Path, fd: int | None, created: list[Path], warning: str | None = None) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_FILE
        self._fd = fd
        self.created = created  # directories this process made, deepest first (removed again if the start fails)
        self.warning = warning  # a filesystem without locks: said once, and the run goes on unguarded
        self._pid_inode: int | None = None  # run.lock as this process wrote it

    @classmethod
    def acquire(cls, run_dir: str | Path, dir_mode: int = 0o700) -> RunLock:
        """Make the run directory if needed and lock it; UserError naming the holder, or why the folder (or its
        metrics.jsonl) is unusable. ``dir_mode`` applies to a directory made here (an existing one keeps its mode).
        A stop signal waits until it is done (a directory made, then left behind by ctrl+c, would be a trace)."""
        with holding():
            lock = cls._acquire(Path(run_dir), dir_mode)
            claim()  # from now on a stop unwinds to give it back (and the folder, if this start made it)
            return lock

    @classmethod
    def _acquire(cls, run_dir: Path, dir_mode: int) -> RunLock:
        created = _make_dir(run_dir, dir_mode)
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            fd = _open_lockable(run_dir, created)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno in _NO_LOCKS:
                    os.close(fd)
                    return cls._on_lock_file(run_dir, created)
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                raise _in_use(run_dir) from None
        lock = cls(run_dir, fd, created)
        lock._write_pid()
        try:
            check_metrics_writable(run_dir)
        except UserError:
            lock.release(remove_dir=True)
            raise
        return lock

    @classmethod
    def _on_lock_file(cls, run_dir: Path, created: list[Path]) -> RunLock:
        """Where directories cannot be flocked: the lock on run.lock itself (or none, said once, without locks)."""
        path = run_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            _remove_dir(run_dir, created)
            raise _unusable(run_dir, path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            warning = None
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                os.close(fd)
                raise _in_use(run_dir) from None
            warning = (f"{run_dir}: this filesystem has no file locks ({exc.strerror}), so nothing stops a second "
                       f"process from writing this run")
        lock = cls(run_dir, fd, created, warning)  # the lock is this descriptor's
        lock._write_pid()
        return lock

    def _write_pid(self) -> None:
        """run.lock: the holder's PID, for a second start's message (its first write into the directory, so where
        an unusable folder is found)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self.release(remove_dir=True)
            raise _unusable(self.run_dir, self.path, exc) from None
        try:
            self._pid_inode = os.fstat(fd).st_ino  # ours from now: release removes it, written or not
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            os.fsync(fd)
        except OSError as exc:
            self.release(remove_dir=True)
            raise _unusable(self.run_dir, self.path, exc) from None
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, remove_dir: bool = False) -> None:
        """Give the lock back (idempotent). ``remove_dir``: a directory this process made is removed when it
        is empty again (a start that failed leaves no trace). Never interrupted half-way by a stop signal."""
        with holding():
            if self._fd is not None:
                unclaim()
            self._release(remove_dir)

    def _release(self, remove_dir: bool) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if os.stat(self.path, follow_symlinks=False).st_ino == getattr(self, "_pid_inode", None):
                self.path.unlink()  # ours: a newer holder's file (after ours was deleted) is left alone
        except OSError:
            pass
        os.close(fd)  # the flock goes with the last descriptor
        if remove_dir:
            _remove_dir(self.run_dir, self.created)

    def __del__(self) -> None:  # an unreleased lock of a collected owner (a test's Trainer)
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)


def holder(run_dir: str | Path) -> int | None:
    """The PID holding a run directory's lock (0 when it is held but run.lock names no PID); None when free.

    A probe takes a shared lock for an instant; a start that meets it retries (RETRY_SECONDS)."""
    run_dir = Path(run_dir)
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return _read_pid(run_dir / LOCK_FILE) or 0
            return None
        return None  # nobody holds it (closing the descriptor drops the probe's shared lock)
    finally:
        os.close(fd)


def refuse_if_held(run_dir: str | Path) -> None:
    """UserError naming the holder when a process holds the run directory's lock (a launcher's check before it
    starts the processes that would each take it)."""
    if holder(run_dir) is not None:
        raise _in_use(Path(run_dir))


def check_metrics_writable(run_dir: Path) -> None:
    """UserError unless metrics.jsonl can be appended to (checked before anything is written)."""
    path = run_dir / METRICS_FILE
    st = _stat(run_dir, path)
    if st is None:
        return
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{path} is not a regular file: move it away (a run appends its history there)")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError as exc:
        raise _unusable(run_dir, path, exc) from None
    os.close(fd)


# ---------------------------------------------------------------- helpers


def _make_dir(run_dir: Path, mode: int) -> list[Path]:
    """Create the run directory (``mode``) and its missing parents; the directories made here, deepest first."""
    st = _stat(run_dir, run_dir)
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise UserError(f"{str(run_dir)[:300]} exists and is not a directory: move it away, or pick another "
                            f"out_dir/run_name")
        return []
    missing = [run_dir]
    while not missing[-1].parent.exists() and missing[-1].parent != missing[-1]:
        missing.append(missing[-1].parent)
    created: list[Path] = []
    try:
        for directory in reversed(missing):
            directory.mkdir(mode=mode if directory == run_dir else 0o777)
            created.insert(0, directory)
    except FileExistsError:
        if run_dir.is_dir():
            return created  # made by a concurrent start a moment ago: the lock decides between us
        _remove_dir(run_dir, created)
        raise _unusable(run_dir, run_dir.parent, OSError(errno.ENOTDIR, "not a directory")) from None
    except OSError as exc:
        _remove_dir(run_dir, created)
        raise _unusable(run_dir, run_dir, exc) from None
    return created


def _stat(run_dir: Path, path: Path) -> os.stat_result | None:
    """``path``'s stat, None when it does not exist; UserError when it cannot be looked at."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unusable(run_dir, path, exc) from None


def _remove_dir(run_dir: Path, created: list[Path]) -> None:
    for directory in created:  # deepest first, each only if empty: nothing of anyone else's is removed
        try:
            directory.rmdir()
        except OSError:
            return


def _unusable(run_dir: Path, path: Path, exc: OSError) -> UserError:
    why = {
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "the operation is not permitted (an immutable file?)",
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.ENOTDIR: "a file is in the way where a directory should be",
        errno.ENAMETOOLONG: "the path is too long for the file system",
        errno.ELOOP: "it is a symbolic link",
        errno.EISDIR: "it is a directory",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return UserError(f"cannot write the run directory {str(run_dir)[:300]} ({str(path)[:300]}: {why}): pick a "
                     f"writable out_dir with free space (--out_dir=DIR)")


def _open_lockable(run_dir: Path, created: list[Path]) -> int:
    """A descriptor of the run directory itself, to flock."""
    try:
        return os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        _remove_dir(run_dir, created)
        raise _unusable(run_dir, run_dir, exc) from None


def _in_use(run_dir: Path) -> UserError:
    pid = _read_pid(run_dir / LOCK_FILE)
    return UserError(f"{run_dir} is in use by another tuigpt process (PID {pid or 'unknown'}): watch it with "
                     f"`tuigpt watch {run_dir}`, stop it first, or start a new run with --run_name=NEW_NAME (one "
                     f"process writes a run directory at a time)")


def _read_pid(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)
    return int(text) if text.isdigit() else None
