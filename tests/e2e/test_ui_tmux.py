"""End to end: `python -m tuigpt` in a real terminal (tmux), a tiny run, read the screen, quit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]


class Tmux:
    """One tmux session on a private server socket (never touches the user's sessions)."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "tui")

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen shows:\n{screen}")
            time.sleep(0.2)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(f"tuigpt-test-{os.getpid()}-{tmp_path.name}")
    try:
        yield t
    finally:
        subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True)


def test_tui_in_tmux_trains_shows_done_and_quits_with_0(tmux: Tmux, tiny_yaml: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    exit_file = tmp_path / "exit"
    env = " ".join(f"{k}={v}" for k, v in cli_env.items() if k in ("TUIGPT_CACHE_DIR", "TIKTOKEN_CACHE_DIR"))
    command = (
        f"cd {REPO} && env -u COLUMNS -u LINES {env} {sys.executable} -m tuigpt {tiny_yaml} --max_iters=200 --eval_interval=50; "
        f"echo $? > {exit_file}; sleep 30"
    )
    tmux.run("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", command)
    tmux.wait_for(" DONE ", timeout=90)
    screen = tmux.wait_for("done at iter 200")  # the summary lands just after the state
    assert "iter 200/200" in screen and "params" in screen and "cpu float32" in screen
    assert "loss · whole run" in screen and "done at iter 200" in screen
    assert "q Quit" in screen

    tmux.run("resize-window", "-t", "tui", "-x", "80", "-y", "24")
    screen = tmux.wait_for("Events  Sample  Speed")  # the compact layout's tabs
    assert " DONE " in screen and "q Quit" in screen

    tmux.run("send-keys", "-t", "tui", "q")
    deadline = time.monotonic() + 20
    while not exit_file.exists() or not exit_file.read_text().strip():
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.2)
    assert exit_file.read_text().strip() == "0"


def _iteration(screen: str) -> int:
    import re

    match = re.search(r"iter ([\d,]+)/", screen)
    return int(match.group(1).replace(",", "")) if match else -1  # -1: the header has no iteration yet


def test_keys_drive_the_real_run_in_tmux(tmux: Tmux, tiny_yaml: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    """p pauses (the counter stops) and resumes, c writes last.pt, s shows a sample, q + Enter saves and quits."""
    exit_file = tmp_path / "exit"
    run_dir = tiny_yaml.parent / "runs" / "tiny"
    env = " ".join(f"{k}={v}" for k, v in cli_env.items() if k in ("TUIGPT_CACHE_DIR", "TIKTOKEN_CACHE_DIR"))
    command = (f"cd {REPO} && env -u COLUMNS -u LINES {env} {sys.executable} -m tuigpt {tiny_yaml} --max_iters=100000 "
               f"--eval_interval=100000; echo $? > {exit_file}; sleep 30")
    tmux.run("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", command)
    tmux.wait_for(" RUNNING ", timeout=90)
    deadline = time.monotonic() + 60
    while _iteration(tmux.screen()) < 5:  # the panes update as it trains
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.2)

    tmux.run("send-keys", "-t", "tui", "p")
    tmux.wait_for(" PAUSED ")
    time.sleep(0.5)
    paused_at = _iteration(tmux.screen())
    time.sleep(1.5)
    assert _iteration(tmux.screen()) == paused_at  # nothing trains while paused

    tmux.run("send-keys", "-t", "tui", "c")
    tmux.wait_for(f"(iter {paused_at}, command, ")  # after the path, which may wrap: the figures stay on one line
    assert (run_dir / "last.pt").exists()

    tmux.run("send-keys", "-t", "tui", "s")
    screen = tmux.wait_for(f"sample @ iter {paused_at}", timeout=60)
    assert "no sample yet" not in screen

    tmux.run("send-keys", "-t", "tui", "p")
    tmux.wait_for(" RUNNING ")
    deadline = time.monotonic() + 30
    while _iteration(tmux.screen()) <= paused_at:
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.2)

    tmux.run("send-keys", "-t", "tui", "q")
    tmux.wait_for("Save checkpoint and quit")
    tmux.run("send-keys", "-t", "tui", "Enter")
    deadline = time.monotonic() + 30
    while not exit_file.exists() or not exit_file.read_text().strip():
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.2)
    assert exit_file.read_text().strip() == "0"

    from tuigpt.engine.checkpoint import load_checkpoint
    from tuigpt.run.metrics_log import read_metrics

    finish = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "finish"][-1]
    assert finish["reason"] == "stopped" and finish["iter"] > paused_at
    assert load_checkpoint(run_dir / "last.pt")["iter_num"] == finish["iter"]


@pytest.mark.parametrize("how", ["SIGTERM", "hang-up", "SIGHUP, terminal alive"])
def test_monitor_saves_and_exits_on_sigterm_and_when_the_terminal_goes(how: str, tmux: Tmux, tiny_yaml: Path,
                                                                       cli_env: dict[str, str], tmp_path: Path) -> None:
    """A scheduler's SIGTERM, the SSH session dropping (tmux closing the pane sends SIGHUP), or a SIGHUP the
    terminal survives (kill -HUP): last.pt is written, metrics.jsonl records the stop, and the process ends with
    128+N; where the terminal is still there it is restored (echo on, main screen, cursor shown)."""
    import signal

    from tuigpt.engine.checkpoint import load_checkpoint
    from tuigpt.run.metrics_log import read_metrics

    exit_file = tmp_path / "exit"
    run_dir = tiny_yaml.parent / "runs" / "tiny"
    env = " ".join(f"{k}={v}" for k, v in cli_env.items() if k in ("TUIGPT_CACHE_DIR", "TIKTOKEN_CACHE_DIR"))
    # the shell writes its pid and becomes tuigpt (exec), in the foreground of the pane's terminal
    command = (f"cd {REPO} && sh -c 'echo $$ > {tmp_path / 'pid'}; exec env -u COLUMNS -u LINES {env} "
               f"{sys.executable} -m tuigpt {tiny_yaml} --max_iters=100000 --eval_interval=100000'; "
               f"echo $? > {exit_file}; stty -a > {tmp_path / 'stty'}; sleep 30")
    tmux.run("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", command)
    tmux.wait_for(" RUNNING ", timeout=90)
    pid = int((tmp_path / "pid").read_text())
    if how == "SIGTERM":
        os.kill(pid, signal.SIGTERM)
        expected = 128 + signal.SIGTERM
    elif how == "SIGHUP, terminal alive":
        os.kill(pid, signal.SIGHUP)
        expected = 128 + signal.SIGHUP
    else:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], check=True)  # the terminal is gone
        expected = None  # the shell that would record the code went with the terminal
    deadline = time.monotonic() + 60
    while True:  # the training process saves and exits
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "tuigpt did not exit"
        time.sleep(0.2)
    finish = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "finish"]
    assert finish and finish[-1]["reason"] == "stopped"
    assert load_checkpoint(run_dir / "last.pt")["iter_num"] == finish[-1]["iter"]
    if expected is not None:
        deadline = time.monotonic() + 10
        while not exit_file.exists() or not exit_file.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert exit_file.read_text().strip() == str(expected)
        assert "stopped at iter" in tmux.screen()  # the closing line, printed after the monitor left
        flags = tmux.run("display-message", "-p", "-t", "tui", "#{alternate_on} #{cursor_flag}").split()
        assert flags == ["0", "1"], "the main screen is back and the cursor shown"
        deadline = time.monotonic() + 10
        while not (tmp_path / "stty").exists() or not (tmp_path / "stty").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        modes = (tmp_path / "stty").read_text().split()
        assert "echo" in modes and "icanon" in modes, "the terminal is out of raw mode"


def _resize_storm(tmux: Tmux) -> None:
    """`l`, then 8 resizes within 2 s: 120x40 → 80x24 → 120x40 … (the plotext log crash took the run down)."""
    tmux.run("send-keys", "-t", "tui", "l")
    for k in range(8):
        w, h = (80, 24) if k % 2 == 0 else (120, 40)
        tmux.run("resize-window", "-t", "tui", "-x", str(w), "-y", str(h))
        time.sleep(0.2)  # pacing the storm (8 in 1.6 s), not waiting for a state


def _logged_iter(metrics: Path) -> int:
    import json

    iters = [json.loads(line)["iter"] for line in metrics.read_text().splitlines() if '"type":"iter"' in line]
    return iters[-1] if iters else -1


def _chart_survives(tmux: Tmux, metrics: Path) -> None:
    before = _logged_iter(metrics)
    _resize_storm(tmux)
    screen = tmux.wait_for("log y", timeout=30)
    deadline = time.monotonic() + 60
    while _logged_iter(metrics) <= before + 2:  # training keeps logging
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.2)
    screen = tmux.wait_for("⣿", timeout=30)  # the chart is drawn (its filled area), at the final 120x40
    assert "Traceback" not in screen and "Error" not in screen
    assert "loss · whole run · log y" in screen


def test_log_y_and_a_resize_storm_keep_the_monitor_and_the_run_alive(tmux: Tmux, tiny_yaml: Path,
                                                                     cli_env: dict[str, str]) -> None:
    env = " ".join(f"{k}={v}" for k, v in cli_env.items() if k in ("TUIGPT_CACHE_DIR", "TIKTOKEN_CACHE_DIR"))
    command = (f"cd {REPO} && env -u COLUMNS -u LINES {env} {sys.executable} -m tuigpt {tiny_yaml} --max_iters=100000 "
               f"--eval_interval=40 --log_interval=1; sleep 30")
    tmux.run("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", command)
    tmux.wait_for(" RUNNING ", timeout=90)
    metrics = tiny_yaml.parent / "runs" / "tiny" / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while _logged_iter(metrics) < 45:  # past the first eval after iteration 0: points and evals to draw
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.2)
    _chart_survives(tmux, metrics)
    tmux.run("send-keys", "-t", "tui", "q")
    tmux.wait_for("Save checkpoint and quit")
    tmux.run("send-keys", "-t", "tui", "Enter")
    tmux.wait_for("stopped at iter", timeout=60)  # the closing line, after the monitor left: no crash on the way


def _watchers(run_dir: Path) -> list[int]:
    """PIDs of `tuigpt watch RUN_DIR` processes."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                words = f.read().split(b"\0")
        except OSError:
            continue
        if b"watch" in words and str(run_dir).encode() in words:
            found.append(int(pid))
    return found


def test_the_same_resize_storm_in_tuigpt_watch(tmux: Tmux, tiny_yaml: Path, cli_env: dict[str, str]) -> None:
    import signal

    # evals far apart: each eval and checkpoint adds lines to the events pane, and at 40 the line this test
    # waits for ("connected to the run") scrolled out of sight within a second on a fast machine
    run = subprocess.Popen([sys.executable, "-m", "tuigpt", str(tiny_yaml), "--headless", "--max_iters=100000",
                            "--eval_interval=2000", "--log_interval=1"], cwd=REPO, env=cli_env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_dir = tiny_yaml.parent / "runs" / "tiny"
        metrics = run_dir / "metrics.jsonl"
        deadline = time.monotonic() + 90
        while not metrics.exists() or _logged_iter(metrics) < 45:
            assert time.monotonic() < deadline and run.poll() is None, "the headless run did not start"
            time.sleep(0.2)
        env = " ".join(f"{k}={v}" for k, v in cli_env.items() if k in ("TUIGPT_CACHE_DIR", "TIKTOKEN_CACHE_DIR"))
        tmux.run("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40",
                 f"cd {REPO} && env -u COLUMNS -u LINES {env} {sys.executable} -m tuigpt watch {run_dir}; sleep 30")
        tmux.wait_for("connected to the run", timeout=60)
        _chart_survives(tmux, metrics)
        assert run.poll() is None  # the watched run trains on
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], check=True)  # the terminal goes away (SIGHUP)
        deadline = time.monotonic() + 30
        while _watchers(run_dir):  # the watcher ends with its terminal: it spun at half a CPU for hours before
            assert time.monotonic() < deadline, "tuigpt watch outlived its terminal"
            time.sleep(0.2)
        assert run.poll() is None  # and the run it watched trains on
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
            try:
                run.wait(60)
            except subprocess.TimeoutExpired:
                run.kill()
