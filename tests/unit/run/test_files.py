"""The file primitives: what a write has under way is removed by an exit that cannot wait, a set of files appears
whole or not at all, and the bounded reader never blocks on or swallows what is not a regular file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuigpt.run.files import atomic_file, atomic_folder
from tuigpt.run.interrupts import remove_leftovers
from tuigpt.run.user_files import FileTooBig, read_regular


def test_an_exit_that_cannot_wait_leaves_no_temporary_file_and_no_control_socket(tmp_path: Path) -> None:
    from tuigpt.control.server import ControlServer
    from tuigpt.run.events import EventBus

    bus = EventBus()
    server = ControlServer(tmp_path, lambda c: None, bus.publish, bus.subscribe)
    assert server.start()
    with pytest.raises(FileNotFoundError):  # (the process would have ended: there is nothing left to rename)
        with atomic_file(tmp_path / "last.pt") as f:
            f.write(b"half a checkpoint")  # a second ctrl+c lands here: host.signals.exit_now removes the leftovers
            remove_leftovers()
            assert sorted(os.listdir(tmp_path)) == []  # neither .last.pt.XXXX.tmp nor control.sock
    server.stop()


def test_a_newer_file_at_a_leftover_path_is_left_alone(tmp_path: Path) -> None:
    from tuigpt.run.interrupts import track_leftover

    sock = tmp_path / "control.sock"
    sock.write_text("ours")
    track_leftover(sock, os.stat(sock).st_ino)
    os.link(sock, tmp_path / "kept")  # its inode stays in use, so the newer file gets another
    sock.unlink()
    sock.write_text("a newer run's")  # another inode at the same path
    remove_leftovers()
    assert sock.read_text() == "a newer run's"
    remove_leftovers()


def test_a_folder_written_atomically_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "out") as folder:
            (folder / "a").write_text("1")
            raise RuntimeError("the disk filled")
    assert os.listdir(tmp_path) == []
    with atomic_folder(tmp_path / "out") as folder:
        (folder / "a").write_text("1")
    assert os.listdir(tmp_path / "out") == ["a"]
    with pytest.raises(FileExistsError):
        with atomic_folder(tmp_path / "out") as folder:  # an existing folder: linked in, never replacing
            (folder / "b").write_text("2")
            (folder / "a").write_text("not mine")
    assert sorted(os.listdir(tmp_path / "out")) == ["a"] and (tmp_path / "out" / "a").read_text() == "1"


@pytest.mark.parametrize("make", [lambda p: os.mkfifo(p), lambda p: p.mkdir(), lambda p: os.symlink("/dev/zero", p)],
                         ids=["fifo", "directory", "link to /dev/zero"])
def test_the_bounded_reader_refuses_what_is_not_a_regular_file_without_blocking(tmp_path: Path, make) -> None:
    make(tmp_path / "f")
    with pytest.raises(OSError):
        read_regular(tmp_path / "f", 1 << 20)


def test_the_bounded_reader_stops_at_its_bound(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 101)
    assert read_regular(tmp_path / "f", 101) == b"x" * 101
    with pytest.raises(FileTooBig):
        read_regular(tmp_path / "f", 100)
