"""Adversarial cases where a real process is the point (issue 26): stop signals with an output nobody reads, signals
at random moments of the start, a second signal while checkpoints are written, run.lock deleted under a running
run, --nproc over an existing run, a disk that fills before SIGTERM's checkpoint; and, in this process, alert
commands that flood or leave children behind, and socket clients that trickle bytes to hold every slot.
The harness and its invariants: :mod:`support.adversarial`."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml
from support.adversarial import Case, SocketHarness

from conftest import REPO, TINY
from support.corpus import shakespeare, tiktoken_cache

PROCESS_SECONDS = 120  # a case that starts torch processes on a loaded 2-core machine; the stop itself gets 10 s
STOP_SECONDS = 10.0


def _config(work: Path, **values: Any) -> Path:
    path = work / "proc.yaml"
    path.write_text(yaml.safe_dump({**TINY, "out_dir": str(work / "runs"), "run_name": "proc",
                                    "data_path": str(shakespeare()), "max_iters": 10**8, "eval_interval": 10**8,
                                    **values}))
    return path


def _env() -> dict[str, str]:
    return dict(os.environ, TIKTOKEN_CACHE_DIR=str(tiktoken_cache() or ""), PYTHONUNBUFFERED="1")


def _launch(config: Path, *extra: str, stdout: Any = subprocess.PIPE, stderr: Any = subprocess.PIPE
            ) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tuigpt", str(config), "--headless", *extra], cwd=REPO,
                            env=_env(), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)


def _iterations(run_dir: Path) -> int:
    try:
        return (run_dir / "metrics.jsonl").read_bytes().count(b'"type":"iter"')
    except OSError:
        return 0


def _until(predicate: Callable[[], Any], seconds: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return bool(predicate())
        time.sleep(0.02)
    return False


def _handles(pid: int) -> bool:
    """tuigpt's entry has installed its handlers (SIGTERM is caught): the interpreter's own start-up is over."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(mask >> (signal.SIGTERM - 1) & 1)


def _whole(run_dir: Path, stopped: bool = False) -> str | None:
    """What a run left is whole: every metrics.jsonl line a record, iterations never repeated, a last.pt that loads
    (and, for a run that stopped with a save, the iteration its last record names); a problem, or None."""
    from tuigpt.engine.checkpoint import load_checkpoint
    from tuigpt.run.metrics_log import read_metrics

    raw = (run_dir / "metrics.jsonl").read_bytes() if (run_dir / "metrics.jsonl").exists() else b""
    if raw and not raw.endswith(b"\n"):
        return "lost: metrics.jsonl ends in a torn line"
    records = read_metrics(run_dir / "metrics.jsonl")
    if len(records) != raw.count(b"\n"):
        return "lost: a metrics.jsonl line is not a record"
    iters = [r["iter"] for r in records if r.get("type") == "iter"]
    if any(b <= a for a, b in zip(iters, iters[1:])):
        return "lost: iterations repeat in metrics.jsonl (two writers?)"
    if (run_dir / "last.pt").exists():
        saved = load_checkpoint(run_dir / "last.pt")["iter_num"]
        finish = next((r for r in reversed(records) if r.get("type") == "finish"), None)
        if stopped and (finish is None or finish.get("iter") != saved):
            return f"lost: the run ended at {finish and finish.get('iter')} but last.pt holds {saved}"
    if (run_dir / "control.sock").exists() or list(run_dir.glob(".*.tmp")):
        return "left behind: a control socket or a temporary file of an ended run"
    return None


def _finish(proc: subprocess.Popen, seconds: float) -> tuple[int | None, str]:
    """The exit code within ``seconds`` (None: it hung, and was killed), and its stderr, echoed for the harness's
    traceback check."""
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return None, (err or b"").decode(errors="replace")
    text = (err or b"").decode(errors="replace")
    sys.stderr.write(text if proc.returncode in (0, 2) else "")  # exit 2: the harness checks its one line
    return proc.returncode, text


def _traceback(text: str) -> str | None:
    return f"traceback printed: {text[-400:]}" if "Traceback" in text else None


# ---------------------------------------------------------------- signals


def unread_output_case(signum: int) -> Case:
    state: dict[str, Any] = {}

    def action(work: Path) -> int:
        run_dir = work / "runs" / "proc"
        proc = _launch(_config(work), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # one pipe, never read
        try:
            if not _until(lambda: _iterations(run_dir) >= 1000, 90, proc):  # the pipe and its queue are full by now
                state["problem"] = "hang: the run never got to 1,000 iterations"
            proc.send_signal(signum)
            t0 = time.monotonic()
            code = proc.wait(timeout=60)
            state["seconds"] = time.monotonic() - t0
            return code
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]

    def check(work: Path, code: int) -> str | None:
        if state.get("problem"):
            return state["problem"]
        if state["seconds"] > STOP_SECONDS:
            return f"hang: {state['seconds']:.1f} s from the signal to the exit"
        return _whole(work / "runs" / "proc", stopped=True)
    return Case("signal", f"{signal.Signals(signum).name}, output unread", action, allowed=(128 + signum,),
                check=check)


def start_edge_case(signum: int, delay: float) -> Case:
    text: dict[str, str] = {}

    def action(work: Path) -> int:
        proc = _launch(_config(work))
        _until(lambda: _handles(proc.pid), 60, proc)
        time.sleep(delay)  # a random moment: imports (torch's), set-up, the first steps
        proc.send_signal(signum)
        t0 = time.monotonic()
        code, text["err"] = _finish(proc, 60)
        text["seconds"] = f"{time.monotonic() - t0:.1f}"
        return -1 if code is None else code

    def check(work: Path, code: int) -> str | None:
        if float(text["seconds"]) > STOP_SECONDS:
            return f"hang: {text['seconds']} s from the signal to the exit"
        run_dir = work / "runs" / "proc"
        if run_dir.exists() and not (run_dir / "last.pt").exists():
            return "left behind: a half-made run folder"
        return _traceback(text["err"]) or (_whole(run_dir, stopped=True) if run_dir.exists() else None)
    return Case("signal", f"{signal.Signals(signum).name} {delay:.2f} s into the start", action,
                allowed=(128 + signum,), check=check)


def second_signal_case(signum: int, delay: float) -> Case:
    text: dict[str, str] = {}

    def action(work: Path) -> int:
        run_dir = work / "runs" / "proc"
        proc = _launch(_config(work, eval_interval=2, eval_iters=1))  # a checkpoint every 2 iterations
        _until(lambda: (run_dir / "last.pt").exists(), 90, proc)
        time.sleep(delay)
        proc.send_signal(signum)
        proc.send_signal(signum)  # at once: exit now, whatever is being written
        code, text["err"] = _finish(proc, STOP_SECONDS)
        return -1 if code is None else code

    def check(work: Path, code: int) -> str | None:
        return _traceback(text["err"]) or _whole(work / "runs" / "proc")
    return Case("signal", f"second {signal.Signals(signum).name} {delay:.2f} s into checkpoints", action,
                allowed=(128 + signum,), check=check)


# ---------------------------------------------------------------- one writer, --nproc, a full disk


def lock_deleted_case() -> Case:
    text: dict[str, str] = {}

    def action(work: Path) -> int:
        run_dir = work / "runs" / "proc"
        config = _config(work, eval_interval=20, eval_iters=1, log_interval=1)
        first = _launch(config, stdout=subprocess.DEVNULL)
        try:
            _until(lambda: (run_dir / "last.pt").exists() and (run_dir / "control.sock").exists(), 90, first)
            (run_dir / "run.lock").unlink(missing_ok=True)  # rm run.lock under a running run
            second = _launch(config, "--resume")
            code, text["err"] = _finish(second, 60)
            first.send_signal(signal.SIGTERM)
            text["first"] = str(first.wait(timeout=60))
        finally:
            first.kill()
            first.wait()
        return -1 if code is None else code

    def check(work: Path, code: int) -> str | None:
        if text.get("first") != str(128 + signal.SIGTERM):
            return f"exit {text.get('first')}: the first run did not stop as asked"
        return _whole(work / "runs" / "proc", stopped=True)
    return Case("one writer", "run.lock deleted, a second --resume", action, allowed=(2,), check=check)


def nproc_case() -> Case:
    def action(work: Path) -> int:
        config = _config(work, out_dir=str(work / "runs"), run_name="victim", max_iters=3)
        code, _ = _finish(_launch(config, "--nproc=2"), 60)
        return -1 if code is None else code
    return Case("one writer", "--nproc=2 over an existing run", action, allowed=(2,))


def disk_full_case() -> Case:
    state: dict[str, Any] = {}

    def action(work: Path) -> int:
        disk = work / "disk"
        disk.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
                          capture_output=True).returncode:
            state["skipped"] = True
            return 4
        try:
            run_dir = disk / "runs" / "proc"
            proc = _launch(_config(work, out_dir=str(disk / "runs"), eval_interval=5, eval_iters=1),
                           stdout=subprocess.DEVNULL)
            _until(lambda: (run_dir / "last.pt").exists(), 90, proc)
            try:
                with open(disk / "filler", "wb") as f:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
            except OSError:
                pass
            proc.send_signal(signal.SIGTERM)
            code, state["err"] = _finish(proc, 60)
            (disk / "filler").unlink(missing_ok=True)
            state["problem"] = _traceback(state["err"]) or _whole(run_dir)
            return -1 if code is None else code
        finally:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)

    return Case("disk", "full disk, then SIGTERM", action, allowed=(4,), check=lambda w, c: state.get("problem"))


# ---------------------------------------------------------------- in this process: alert commands, slow clients


def _alive(marker: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    return True
        except OSError:
            continue
    return False


def alert_case(command: str, marker: str | None) -> Case:
    state: dict[str, str | None] = {}

    def action(work: Path) -> int:
        import resource

        from tuigpt.host.alerts import AlertCommand
        from tuigpt.run.events import Notice, RunFinished

        said: list[str] = []
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        hook = AlertCommand(command, lambda e: said.append(e.message) if isinstance(e, Notice) else None,
                            timeout=1.0)
        hook(RunFinished(iter=1, reason="done", best_val_loss=1.0, last_val_loss=1.0, wall_seconds=1,
                         train_seconds=1, eval_seconds=0, checkpoint_seconds=0, last_checkpoint=None, tokens_seen=1))
        hook.close(wait=10)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        if grown > 200_000:
            state["problem"] = f"lost: alert_command output grew this process by {grown // 1024} MiB"
        elif any(len(line) > 400 for line in said):
            state["problem"] = f"other: an unbounded warning line: {said[0][:200]}"
        elif marker is not None and not _until(lambda: not _alive(marker), 5):
            state["problem"] = f"left behind: a process the command started ({marker}) still runs"
        return 0
    return Case("alert", command[:60], action, allowed=(0,), check=lambda w, c: state.get("problem"))


def slow_clients_case(harness: SocketHarness, kind: str) -> Case:
    state: dict[str, str | None] = {}

    def action(work: Path) -> int:
        from tuigpt.control.server import MAX_CLIENTS

        slow = []
        try:
            for _ in range(MAX_CLIENTS):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(harness.path))
                s.sendall(b"{" if kind == "trickle" else b"\n")  # a byte, or a blank line: never a message
                slow.append(s)
            for k in range(3):  # a watcher gets in, at once, every time
                w = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                w.settimeout(5)
                w.connect(str(harness.path))
                w.sendall(b'{"cmd": "subscribe"}\n')
                reply = w.recv(65536)
                w.close()
                if b'"ok":true' not in reply:
                    state["problem"] = f"other: watcher {k + 1} was kept out: {reply[:200]!r}"
                    break
        finally:
            for s in slow:
                s.close()
        if state.get("problem") is None and not _until(lambda: harness.server.clients == 0, 10):
            state["problem"] = "left behind: connections still held after their clients left"
        return 0
    return Case("socket", f"{MAX_SLOW} {kind} clients, then watchers", action, allowed=(0,),
                check=lambda w, c: state.get("problem"))


MAX_SLOW = 16


def process_cases(rng: random.Random, scale: float, harness: SocketHarness) -> list[Case]:
    sigs = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    tag = f"{rng.randrange(100, 999)}"
    cases = [unread_output_case(rng.choice(sigs)), lock_deleted_case(), nproc_case(), disk_full_case()]
    cases += [start_edge_case(rng.choice(sigs), rng.choice([0.0, rng.uniform(0, 0.4), rng.uniform(0.4, 2.5)]))
              for _ in range(max(2, round(6 * scale)))]
    cases += [second_signal_case(rng.choice(sigs[:2]), rng.uniform(0, 1.0)) for _ in range(max(1, round(3 * scale)))]
    cases += [alert_case(c, m) for c, m in (("yes", None), ("sh -c 'yes >&2'", None),
                                           ("sh -c 'cat /dev/zero >&2'", None),
                                           (f"sh -c 'sleep 8{tag}1 & sleep 8{tag}2'", f"sleep 8{tag}"),
                                           (f"sh -c 'sleep 8{tag}3 &'", f"sleep 8{tag}3"))]
    cases += [slow_clients_case(harness, kind) for kind in ("trickle", "blank line")]
    for case in cases:
        case.budget = PROCESS_SECONDS
    return cases
