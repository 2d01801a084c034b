"""A headless run whose output nobody reads (ctrl+s, a stalled SSH link, a pipe reader that stopped) trains on."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from support import stop_process
from support.live_run import wait_for, write_config

from tuigpt.run.metrics_log import read_metrics
from tuigpt.ui.line_output import CAPACITY

from conftest import REPO

F_SETPIPE_SZ = 1031


def _last_iter(metrics: Path) -> int:
    if not metrics.exists():
        return 0
    return max((r["iter"] for r in read_metrics(metrics) if r["type"] == "iter"), default=0)


def test_an_unread_output_does_not_stop_training_and_says_what_it_left_out(tmp_path: Path) -> None:
    config = write_config(tmp_path, log_interval=1, eval_interval=1_000_000_000)
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, F_SETPIPE_SZ, 4096)  # a pipe that fills after some 30 lines, not 64 KiB
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    errors = tmp_path / "stderr.txt"
    with open(errors, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "tuigpt", str(config), "--headless"], cwd=REPO, env=env,
                                stdout=write_fd, stderr=stderr)
    os.close(write_fd)
    metrics = tmp_path / "runs" / "live" / "metrics.jsonl"

    def trained_past(past: int) -> bool:
        if proc.poll() is not None:  # a run that could not start is a failure now, not after the whole wait
            raise AssertionError(f"the run exited with {proc.returncode}: {errors.read_text()}")
        return _last_iter(metrics) > past

    try:
        past = CAPACITY + 500  # more lines than the pipe and the queue hold together
        wait_for(lambda: trained_past(past), 240, f"iteration {past} with nobody reading the output")
        proc.send_signal(signal.SIGTERM)
        chunks = []
        while chunk := os.read(read_fd, 65536):  # the reader comes back: what was kept arrives, then the end
            chunks.append(chunk)
        assert proc.wait(60) == 128 + signal.SIGTERM
    finally:
        os.close(read_fd)
        stop_process(proc)
    lines = b"".join(chunks).decode().splitlines()
    assert lines[0].startswith("tuigpt training live")
    assert re.match(r"stopped at iter \d+ in", lines[-1]), lines[-3:]
    notes = [k for k, line in enumerate(lines) if "not printed: the output was not being read" in line]
    assert notes, "the lines left out were said"
    iters = {k: int(m.group(1)) for k, line in enumerate(lines) if (m := re.match(r"iter (\d+)/", line))}
    stopped_at = int(re.match(r"stopped at iter (\d+) in", lines[-1]).group(1))
    for k in notes:
        before = max(i for j, i in iters.items() if j < k)
        # the first iteration printed after the note; a note that is the last word before the closing line (the
        # SIGTERM came while lines were being left out) stands for every iteration up to the stop
        after = min((i for j, i in iters.items() if j > k), default=stopped_at + 1)
        said = int(re.match(r"\.\.\. (\d+) lines? not printed", lines[k]).group(1))
        missing = after - before - 1  # (a warning left out with them counts too: the exact count is a unit test's)
        assert missing <= said <= missing + 5, "the note counts the lines missing where it stands"
    printed = list(iters.values())
    assert printed == sorted(printed) and len(printed) == len(set(printed)), "in order, none twice"
