"""Signals and kills against a real headless training process: nothing reported saved is ever lost."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tuigpt.engine.checkpoint import load_checkpoint
from tuigpt.run.metrics_log import read_metrics

from conftest import REPO  # noqa: E402


def launch(tiny_yaml: Path, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tuigpt", str(tiny_yaml), "--headless", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                            stdin=subprocess.DEVNULL)


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 60) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            lines.append(f"[exited: {proc.stderr.read()[-2000:]}]")  # show why
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no line matching {pattern!r}; got {lines[-5:]}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_stops_saves_and_exits_with_its_code(tiny_yaml: Path, cli_env, signum: int) -> None:
    proc = launch(tiny_yaml, cli_env, "--max_iters=100000", "--eval_interval=100000")
    wait_for_line(proc, r"^iter 20/")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "stopping at the next iteration and writing last.pt" in err
    assert "Traceback" not in err
    stopped = re.search(r"checkpoint (\S+last\.pt) \(iter (\d+), stop", out)
    assert stopped, out[-500:]
    assert load_checkpoint(stopped.group(1))["iter_num"] == int(stopped.group(2))
    assert out.strip().splitlines()[-1].startswith(f"stopped at iter {stopped.group(2)}")
    records = read_metrics(Path(stopped.group(1)).parent / "metrics.jsonl")
    assert records[-1]["type"] == "finish" and records[-1]["reason"] == "stopped"


def test_second_ctrl_c_exits_at_once_without_damage(tiny_yaml: Path, cli_env) -> None:
    proc = launch(tiny_yaml, cli_env, "--max_iters=100000", "--eval_interval=100000")
    wait_for_line(proc, r"^iter 10/")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    run_dir = tiny_yaml.parent / "runs" / "tiny"
    assert not (run_dir / "control.sock").exists() and not list(run_dir.glob(".*.tmp"))  # nothing left behind
    for line in (run_dir / "metrics.jsonl").read_bytes().splitlines(keepends=True)[:-1]:
        assert line.endswith(b"\n")
    if (run_dir / "last.pt").exists():
        start_iter = load_checkpoint(run_dir / "last.pt")["iter_num"]
        proc = launch(tiny_yaml, cli_env, "--resume", f"--max_iters={start_iter + 2}")
    else:
        proc = launch(tiny_yaml, cli_env, "--max_iters=2")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert not list(run_dir.glob(".*.tmp"))


def _handles(pid: int, signum: int) -> bool:
    """Whether process ``pid`` catches ``signum`` (its SigCgt mask): tuigpt's entry has installed its handlers."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(mask >> (signum - 1) & 1)


def test_a_stop_signal_stops_a_run_whose_output_nobody_reads(tiny_yaml: Path, cli_env) -> None:
    from support import wait_for

    run_dir = tiny_yaml.parent / "runs" / "tiny"
    proc = subprocess.Popen([sys.executable, "-m", "tuigpt", str(tiny_yaml), "--headless", "--max_iters=100000000",
                             "--eval_interval=100000000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=cli_env, cwd=REPO, stdin=subprocess.DEVNULL)  # one pipe, never read (`| less`)
    try:
        def iterations() -> int:
            try:
                return (run_dir / "metrics.jsonl").read_bytes().count(b'"type":"iter"')
            except FileNotFoundError:
                return 0

        # a 64 KiB pipe and the 2,000 lines waiting behind it are full long before this
        wait_for(lambda: iterations() >= 3000 or proc.poll() is not None, 300, "3,000 iterations")
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert proc.wait(timeout=60) == 143
        assert time.monotonic() - signalled < 15  # it trained on for minutes, and never saved, before
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    state = load_checkpoint(run_dir / "last.pt")
    finish = read_metrics(run_dir / "metrics.jsonl")[-1]
    assert finish["type"] == "finish" and finish["reason"] == "stopped" and finish["iter"] == state["iter_num"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_at_any_moment_of_the_start_is_one_line_and_128_plus_n(tiny_yaml: Path, cli_env, signum: int) -> None:
    from support import wait_for

    rng = random.Random(signum)
    run_dir = tiny_yaml.parent / "runs" / "tiny"
    for delay in (0.0, rng.uniform(0.05, 0.6), rng.uniform(0.6, 2.0)):  # imports (torch's), set-up, training
        shutil.rmtree(run_dir, ignore_errors=True)
        proc = launch(tiny_yaml, cli_env, "--max_iters=100000", "--eval_interval=100000")
        # from tuigpt's first line on (the interpreter's own start-up before it is Python's to answer)
        wait_for(lambda: _handles(proc.pid, signal.SIGTERM) or proc.poll() is not None, 60, "tuigpt's handlers")
        time.sleep(delay)  # a random moment is the point here
        proc.send_signal(signum)
        signalled = time.monotonic()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signum, (delay, err[-2000:])
        assert time.monotonic() - signalled < 10, delay  # an import (torch's) is not waited for when nothing is held
        assert "Traceback" not in err and "Error" not in err, (delay, err[-2000:])
        assert not run_dir.exists() or (run_dir / "last.pt").exists(), delay  # no half-made run folder


class Drained:
    """A launched run whose stdout a thread reads as it comes: the run never blocks on a full pipe (so a kill
    lands at a random moment of its work, not while it waits for the test to read), no line is lost to a reader
    buffer, and waiting for a line has a real timeout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in list(self.lines)):
            if time.monotonic() > deadline or (self.proc.poll() is not None and not self._reader.is_alive()):
                raise AssertionError(f"no line matching {pattern!r}; got {self.lines[-5:]}; stderr: "
                                     f"{self.proc.stderr.read()[-2000:] if self.proc.poll() is not None else ''}")
            time.sleep(0.01)

    def kill(self) -> str:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        self.proc.stderr.close()
        return "".join(self.lines)


KILLS = 9


@pytest.mark.slow
@pytest.mark.timeout(600)  # 10 cold starts of a torch process: near the 300 s default on a loaded 2-core machine
def test_sigkill_at_9_random_moments_loses_nothing_reported_saved(tiny_yaml: Path, cli_env) -> None:
    """Nine moments (twenty took 80 s, twelve 50 s, of a suite that must stay under 15 minutes): each one a cold
    start, killed within 1.5 s of its first line, so training, evals and checkpoint writes all get hit; the
    adversarial pass kills many more."""
    rng = random.Random(20261121)
    run_dir = tiny_yaml.parent / "runs" / "tiny"
    common = ["--max_iters=1000000", "--eval_interval=3", "--eval_iters=1"]  # a checkpoint every 3 iterations
    reported_saved = 0
    kills = 0
    for attempt in range(KILLS):
        resume = ["--resume"] if (run_dir / "last.pt").exists() else []
        run = Drained(launch(tiny_yaml, cli_env, *common, *resume))
        run.wait_for(r"^tuigpt (training|resuming)")
        if attempt == 0:  # at least one checkpoint to keep, however slowly a loaded machine starts
            run.wait_for(r"checkpoint \S+last\.pt")
        time.sleep(rng.uniform(0.05, 1.5))  # inside training, evals and checkpoint writes alike
        out = run.kill()
        kills += 1
        saves = [int(n) for n in re.findall(r"checkpoint \S+last\.pt \(iter (\d+)", out)]
        if saves:
            reported_saved = max(reported_saved, max(saves))
        if reported_saved:
            state = load_checkpoint(run_dir / "last.pt")  # never torn
            assert state["iter_num"] >= reported_saved, (attempt, state["iter_num"], reported_saved)
        raw = (run_dir / "metrics.jsonl").read_bytes() if (run_dir / "metrics.jsonl").exists() else b""
        complete = raw[: raw.rfind(b"\n") + 1]
        assert len(read_metrics(run_dir / "metrics.jsonl")) == complete.count(b"\n")  # every complete line parses
    assert kills == KILLS and reported_saved > 0
    # the last resume continues from the newest checkpoint with the whole history before it
    final = load_checkpoint(run_dir / "last.pt")["iter_num"]
    proc = launch(tiny_yaml, cli_env, *common, "--resume", f"--max_iters={final + 3}")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    iters = [r["iter"] for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "iter"]
    # no gaps, and no iteration twice: neither the stretch after a checkpoint nor a session killed before its
    # first checkpoint (whose curve belongs to weights that no longer exist) survives into the history
    assert iters == list(range(1, final + 4))
