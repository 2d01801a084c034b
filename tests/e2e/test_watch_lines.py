"""`tuigpt watch` without a terminal, or before its run exists, and every command's output into a closed pipe
(issue 27: `tuigpt runs | head -3` crashed with a crash.log; `tuigpt watch RUN </dev/null` drew escape codes into a
file and never ended; `watch` right after `nohup tuigpt ... &` opened the previous run or said "not a run
directory")."""

from __future__ import annotations

import os
import pty
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import stop_process, wait_for, wait_for_line
from support.live_run import start_run, write_config

from conftest import REPO
from tuigpt.run.lock import RunLock


def iterations(text: str) -> list[str]:
    """The iteration lines (without their ETA, which a watcher works out from fewer iterations)."""
    return [line.split(" | ETA")[0] for line in text.splitlines() if line.startswith("iter ")]


def watch(*args: str, cwd: Path = REPO, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "tuigpt", "watch", *args], cwd=cwd, env=env, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("args", [["runs"], ["--help"], ["info", "--no-measure"], ["tune", "--help"]])
def test_output_into_a_closed_pipe_ends_quietly(cli_env: dict, tmp_path: Path, args: list[str]) -> None:
    env = dict(cli_env, TUIGPT_CACHE_DIR=str(tmp_path / "cache"))
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # the reader is gone before the first line, as `| head -0` leaves it
    try:
        done = subprocess.run([sys.executable, "-m", "tuigpt", *args], cwd=tmp_path, env=env, stdout=write_fd,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, timeout=120)
    finally:
        os.close(write_fd)
    assert done.returncode == 128 + signal.SIGPIPE, done.stderr
    assert done.stderr == ""  # no "unexpected error", no "Exception ignored ... BrokenPipeError"
    assert not (tmp_path / "cache" / "crash.log").exists()


def test_watch_without_a_terminal_prints_lines_and_ends_with_the_run(tmp_path: Path) -> None:
    config = write_config(tmp_path, max_iters=120, log_interval=20, eval_interval=60)
    run = start_run(config)
    run_dir = tmp_path / "runs" / "live"
    try:
        # as soon as the run has locked its folder: it may still be setting up (nothing written), which watch waits for
        wait_for(lambda: (run_dir / "run.lock").exists() or run.poll() is not None, 60, "the run's folder")
        watcher = watch(str(run_dir))
        out, err = watcher.communicate(timeout=180)
        assert run.wait(60) == 0, run.output()
    finally:
        stop_process(run)
    assert watcher.returncode == 0, err
    assert "\x1b" not in out  # lines, not a screen drawn into a file
    lines = out.splitlines()
    assert lines[0].startswith("tuigpt training live"), out
    assert any(line.startswith("eval iter 60 |") for line in lines), out
    assert iterations(out) == iterations(run.output())  # every line the run printed, once
    assert any(line.startswith("done at iter 120 in") for line in lines[-2:]), out


def test_watch_waits_for_a_run_that_is_still_setting_up(tmp_path: Path) -> None:
    """A run holds its folder's lock from its first moment but writes its first record only after the data, the
    model and any dtype/compile trial: watch says it waits, then follows the run once it writes."""
    finished = tmp_path / "finished"
    finished.mkdir()
    run = start_run(write_config(finished, max_iters=20, eval_interval=10))
    assert run.wait(120) == 0, run.output()
    folder = tmp_path / "runs" / "starting"
    lock = RunLock.acquire(folder)  # this test is the run that is setting up
    try:
        watcher = watch(str(folder))
        assert watcher.stderr is not None
        said = wait_for_line(watcher.stderr, "has written no records yet: waiting for them", timeout=60)
        assert str(folder) in said and f"pid {os.getpid()}" in said and "Ctrl+C to give up" in said
        shutil.copy(finished / "runs" / "live" / "metrics.jsonl", folder / "metrics.jsonl")  # its first records
        out, _ = watcher.communicate(timeout=60)
    finally:
        lock.release()
    assert watcher.returncode == 0
    assert out.splitlines()[0].startswith("tuigpt training live") and "done at iter 20" in out
    assert iterations(out) == iterations(run.output())  # the history replayed: each line once


def test_watch_in_a_terminal_waits_for_a_named_run_to_appear(tmp_path: Path) -> None:
    finished = tmp_path / "finished"
    finished.mkdir()
    run = start_run(write_config(finished, max_iters=20, eval_interval=10))
    assert run.wait(120) == 0, run.output()
    primary, secondary = pty.openpty()  # someone at a terminal, who can press Ctrl+C
    try:
        watcher = watch("soon", cwd=tmp_path, stdin=secondary)
        assert watcher.stderr is not None
        said = wait_for_line(watcher.stderr, "waiting for a run named soon to appear", timeout=60)
        assert "Ctrl+C to give up" in said
        shutil.copytree(finished / "runs" / "live", tmp_path / "checkpoints" / "soon")
        out, _ = watcher.communicate(timeout=60)
    finally:
        os.close(primary)
        os.close(secondary)
    assert watcher.returncode == 0 and "done at iter 20" in out and "\x1b" not in out
