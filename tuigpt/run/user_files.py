"""Files someone else made, that tuigpt parses (a config, data, meta.pkl, config.json, a shard, a checkpoint): one
bounded reader. A regular file only — a FIFO would block forever, /dev/zero never ends, a directory is not a file —
opened without blocking (a FIFO swapped in after a check cannot hang the open), read up to a stated number of bytes,
and every way it can be unusable a one-line UserError naming the file and what to give instead. An optional file
(meta.pkl beside a checkpoint) that is there but is not a regular file is refused, never passed over as absent; a
file of a model folder must not lead out of it through a link.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

from tuigpt.run.errors import UserError
from tuigpt.run.fmt import clip


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file, read through :func:`open_regular` (a FIFO, a device or a directory is an
    OSError, and cannot block); :class:`FileTooBig` when it holds more than ``max_bytes``."""
    with open_regular(path) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooBig(f"{path} is more than {max_bytes:,} bytes")
    return data


class FileTooBig(ValueError):
    """A file holds more bytes than its reader takes."""


def read_user_bytes(path: Path, what: str, fix: str, max_bytes: int) -> bytes:
    """A file a user or another tool made, that tuigpt parses (a config, meta.pkl, config.json): a regular file of
    at most ``max_bytes``; every way it can be unusable is a one-line UserError naming ``what`` and ``fix``."""
    shown = clip(str(path), 200)
    st = stat_regular(path, what, fix)
    if st.st_size > max_bytes:
        raise UserError(f"{what} {shown} is {st.st_size:,} bytes, more than the {max_bytes:,} a {what} may be: {fix}")
    try:
        return read_regular(path, max_bytes)
    except FileTooBig:
        raise UserError(f"{what} {shown} is more than the {max_bytes:,} bytes a {what} may be: {fix}") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {shown}: {exc.strerror or exc}") from None


def read_user_text(path: Path, what: str, fix: str, max_bytes: int) -> str:
    """A user's text file (config, data), strictly UTF-8, through :func:`read_user_bytes`; a file that is not UTF-8
    is a one-line UserError too. ``what`` names the file in errors ("config file", "data file"); ``fix`` says what
    to give instead."""
    raw = read_user_bytes(path, what, fix, max_bytes)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {clip(str(path), 200)} is not UTF-8 text (bad byte at offset {exc.start}): "
                        f"{fix}") from None


def optional_user_file(path: Path, what: str, fix: str) -> bool:
    """Whether an optional file (meta.pkl beside a checkpoint) is there to read: False when nothing is at the path;
    True for a regular file; a UserError when something else is (a FIFO, a directory, a link to a device or to
    nothing), which would otherwise be passed over without a word."""
    if not os.path.lexists(path):
        return False
    stat_regular(path, what, fix)
    return True


def resolved_within(path: Path, roots: list[Path], what: str, fix: str) -> Path:
    """``path`` with its links resolved, which must lie inside one of ``roots`` (a model folder's own files, not a
    link out of it to a file elsewhere); a one-line UserError naming where it leads otherwise."""
    real = Path(os.path.realpath(path))
    for root in roots:
        top = Path(os.path.realpath(root))
        if real == top or top in real.parents:
            return real
    raise UserError(f"{what} {clip(str(path), 200)} leads outside {clip(str(roots[0]), 200)} (to "
                    f"{clip(str(real), 200)}): {fix}")


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
