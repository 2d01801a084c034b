"""The user's own text: FILE, DIR or GLOB resolved to files, read strictly as UTF-8."""

from __future__ import annotations

import glob
import os
import stat
from pathlib import Path

from tuigpt.run.errors import UserError
from tuigpt.run.fmt import clip
from tuigpt.run.user_files import read_user_text

# a text corpus is held in memory with its token ids (8 bytes a token): past a few GiB it belongs in nanoGPT's
# prepared .bin files, which are memory-mapped
MAX_DATA_BYTES = 4 << 30


def resolve_paths(data_path: str) -> list[Path]:
    """FILE, DIR (every *.txt under it) or GLOB -> sorted list of files."""
    path = Path(data_path).expanduser()
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise UserError(f"data_path {clip(data_path, 200)} is not a regular file (a pipe or a device): give a "
                        f"FILE, a DIR of .txt files or a GLOB")
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise UserError(f"data_path {clip(data_path, 200)} is a directory with no .txt files in it")
        return files
    if glob.has_magic(data_path):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(data_path), recursive=True))
        files = [p for p in files if p.is_file()]  # FIFOs and devices a glob matches are left out
        if not files:
            raise UserError(f"data_path {clip(data_path, 200)} matches no files")
        return files
    raise UserError(f"data_path {clip(data_path, 200)} does not exist (give a FILE, a DIR of .txt files or a GLOB)")


def read_text(files: list[Path], label: str) -> str:
    """UTF-8 text of ``files``, newline-joined where a file does not end in one."""
    parts = []
    for path in files:
        text = read_user_text(path, "data file", "data files must be UTF-8 text (a corpus over 4 GiB: prepare it as "
                              "nanoGPT's train.bin/val.bin and use dataset=nanogpt)", max_bytes=MAX_DATA_BYTES)
        if "\0" in text:
            raise UserError(f"{path} looks binary (NUL byte at offset {text.index(chr(0))}): data files must be UTF-8 "
                            f"text")
        parts.append(text.removeprefix("\ufeff"))
    text = "".join(p if p.endswith("\n") or i == len(parts) - 1 else p + "\n" for i, p in enumerate(parts))
    if not text:
        raise UserError(f"{label} holds no text (empty file)")
    return text
