"""One writer per run directory: the lock a start takes, what a second start is told, and what is left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tuigpt.run.errors import UserError
from tuigpt.run.lock import RunLock, holder

def test_a_second_acquire_is_refused_naming_the_holder_and_how_to_watch(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "a"
    lock = RunLock.acquire(run_dir)
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700
    assert holder(run_dir) == os.getpid()
    with pytest.raises(UserError, match=rf"in use by another tuigpt process \(PID {os.getpid()}\).*tuigpt watch {run_dir}"):
        RunLock.acquire(run_dir)
    lock.release()
    assert holder(run_dir) is None and not (run_dir / "run.lock").exists()
    RunLock.acquire(run_dir).release()  # free again


def test_a_failed_start_removes_the_directory_it_made_but_nothing_else(tmp_path: Path) -> None:
    new = tmp_path / "new"
    RunLock.acquire(new).release(remove_dir=True)
    assert not new.exists()
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.jsonl").write_text("")
    RunLock.acquire(old).release(remove_dir=True)
    assert sorted(p.name for p in old.iterdir()) == ["metrics.jsonl"]


def test_unusable_places_are_one_line_errors(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UserError, match="a file is in the way"):
        RunLock.acquire(a_file / "run")
    with pytest.raises(UserError, match="exists and is not a directory"):
        RunLock.acquire(a_file)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "metrics.jsonl").mkdir()
    with pytest.raises(UserError, match="metrics.jsonl is not a regular file"):
        RunLock.acquire(tmp_path / "d")
    assert not (tmp_path / "d" / "run.lock").exists()
    (tmp_path / "e").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "e" / "run.lock")
    with pytest.raises(UserError, match="symbolic link"):
        RunLock.acquire(tmp_path / "e")
    assert not (tmp_path / "elsewhere").exists()


def test_the_directory_mode_follows_share_with_group(tmp_path: Path) -> None:
    lock = RunLock.acquire(tmp_path / "shared", dir_mode=0o750)
    assert stat.S_IMODE(os.stat(tmp_path / "shared").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(tmp_path / "shared" / "run.lock").st_mode) == 0o600
    lock.release()


def test_deleting_run_lock_while_a_run_holds_it_does_not_let_a_second_writer_in(tmp_path: Path) -> None:
    run_dir = tmp_path / "a"
    lock = RunLock.acquire(run_dir)
    (run_dir / "run.lock").unlink()  # what `rm run.lock` does to a training run
    with pytest.raises(UserError, match=r"in use by another tuigpt process \(PID unknown\)"):
        RunLock.acquire(run_dir)
    assert holder(run_dir) == 0  # held, though the file naming the holder is gone
    lock.release()
    assert holder(run_dir) is None
    RunLock.acquire(run_dir).release()
