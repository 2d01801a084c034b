"""`tuigpt tune` on a machine whose load changes halfway through the table: issue 27 saw it write a split measured at
9.49x the config while another trainer stopped mid-table (0.61x timed again idle). Here the test itself starts
busy-loop processes on tune's CPU after the first row and stops them two rows later, in each set of rounds, driven
by tune's own progress lines: tune must say so, time the rows again, and then refuse to name a winner."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY

HOGS = 4  # busy loops pinned beside tune: its CPU goes from mostly its own to a fifth of it


def _pin_to_first_cpu() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux) to share one CPU")
def test_a_load_that_comes_and_goes_mid_table_is_reported_and_names_no_winner(cli_env: dict, tmp_path: Path,
                                                                               shakespeare: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(TINY, out_dir=str(tmp_path / "runs"), data_path=str(shakespeare))))
    written = tmp_path / "tuned.yaml"
    # 3 splits x 2 rounds = 6 timings a set of rounds (each with its trainer built: well above the 0.2 s a load
    # reading needs)
    tune = subprocess.Popen([sys.executable, "-m", "tuigpt", "tune", str(config), "--only-splits", "--steps", "30",
                             "--warmup", "2", "--rounds", "2", "--write", str(written)], cwd=REPO, env=cli_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_pin_to_first_cpu)
    hogs: list[subprocess.Popen[bytes]] = []
    seen: list[str] = []
    try:
        assert tune.stderr is not None
        for line in tune.stderr:  # tune's progress, one line per timing: "tune 3/6: batch 2 x 2, ...: 7.1 ms/iter"
            seen.append(line)
            done = re.match(r"tune (\d+)/\d+: batch ", line)
            if done is None:
                continue
            k = (int(done.group(1)) - 1) % 6 + 1  # the timing's place in its set of rounds
            if k == 1 and not hogs:  # the first row is timed on the quiet machine: now the others arrive
                hogs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"], preexec_fn=_pin_to_first_cpu)
                        for _ in range(HOGS)]
            elif k == 3 and hogs:  # ... and leave: the rest of the rounds run quiet again
                for hog in hogs:
                    hog.kill()
                    hog.wait()
                hogs = []
        out = tune.stdout.read() if tune.stdout is not None else ""
        code = tune.wait(60)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        tune.kill()
        tune.wait()
    progress = "".join(seen)
    assert "the load changed (other processes" in progress, progress  # said while it happened
    assert code == 1, out + progress
    assert "those rows were timed again" in out
    refusal = next(line for line in out.splitlines() if line.startswith("no winner:"))
    assert "the machine's load changed while timing, twice (other processes" in refusal
    assert "nothing written" in refusal and not written.exists()
    assert "fastest:" not in out and "<- fastest" not in out
