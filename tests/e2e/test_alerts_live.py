"""Alerts from real runs: a headless run calls alert_command; a monitored run rings its tmux pane."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from support import wait_for


def _hook(tmp_path: Path) -> tuple[str, Path]:
    calls = tmp_path / "alerts.jsonl"
    script = tmp_path / "hook.py"
    script.write_text("import json, sys\n"
                      f"with open({str(calls)!r}, 'a') as f:\n"
                      "    f.write(json.dumps({'argv': sys.argv[1:], 'stdin': json.load(sys.stdin)}) + '\\n')\n")
    return f"{sys.executable} {script} {{kind}}", calls


def test_a_headless_run_calls_alert_command_with_the_event_json(cli_env, tiny_yaml: Path, tmp_path: Path) -> None:
    command, calls = _hook(tmp_path)
    done = subprocess.run([sys.executable, "-m", "tuigpt", str(tiny_yaml), "--headless", "--max_iters=12",
                           f"--alert_command={command}"], cwd=REPO, env=cli_env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "!!! ALERT [done] tiny: finished at iter 12" in done.stdout
    alerts = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [a["argv"] for a in alerts] == [["done"]]
    payload = alerts[0]["stdin"]
    assert payload["kind"] == "done" and payload["run_name"] == "tiny"
    assert payload["event"]["type"] == "finish" and payload["event"]["reason"] == "done" and payload["event"]["iter"] == 12


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_monitored_run_that_finishes_rings_its_tmux_pane(tiny_yaml: Path, cli_env, tmp_path: Path) -> None:
    socket = f"tuigpt-alert-{os.getpid()}"
    raw = tmp_path / "pane.bytes"
    env = " ".join(f"{k}={v}" for k, v in cli_env.items() if k in ("TUIGPT_CACHE_DIR", "TIKTOKEN_CACHE_DIR"))
    command = (f"cd {REPO} && env -u COLUMNS -u LINES {env} {sys.executable} -m tuigpt {tiny_yaml} --max_iters=30 "
               f"--eval_interval=10; sleep 30")

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", socket, *args], check=True, capture_output=True, text=True).stdout

    try:
        # the pane's raw output (what the program wrote, escape sequences included) goes to a file
        tmux("new-session", "-d", "-s", "tui", "-x", "100", "-y", "30", command)
        tmux("pipe-pane", "-o", "-t", "tui", f"cat >> {raw}")
        wait_for(lambda: " DONE " in tmux("capture-pane", "-p", "-t", "tui"), 120, "the run to finish")
        wait_for(lambda: raw.exists() and b"\x1b]9;tuigpt done" in raw.read_bytes(), 20, "the notification bytes")
        data = raw.read_bytes()
        # inside tmux: the bell as it is (tmux flags the window), the notification wrapped for passthrough
        assert b"\x07\x1bPtmux;\x1b\x1b]9;tuigpt done: tiny: finished at iter 30" in data
        assert b"\x1bPtmux;\x1b\x1b]777;notify;tuigpt done;tiny: finished at iter 30" in data
        tmux("send-keys", "-t", "tui", "q")
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
