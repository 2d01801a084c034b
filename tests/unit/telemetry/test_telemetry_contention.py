"""Contention, not the model, setting the speed (issue 27: "load 100% of 2" while another trainer took half the CPUs
and steps went 5-10x slower, and nothing said why): decided from other processes' share and this process's wait for
a CPU, held against noise, said once when it starts and once when it ends; and for real, with busy loops the test
starts on the reader's own CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from conftest import REPO
from tuigpt.run.alerts import alert_for
from tuigpt.run.events import EndReason, IterationStats, Notice, RunFinished, TelemetrySnapshot
from tuigpt.run.readings import CpuSnapshot
from tuigpt.run.wording import lines_for
from tuigpt.telemetry.contention import ContentionNotices, ContentionWatch, contended_now
from tuigpt.telemetry.load import Load


def cpu(others: float, stretch: float, contended: bool | None, own: float = 0.48) -> CpuSnapshot:
    return CpuSnapshot([100.0, 100.0], None, None, None, None, {}, None, None, None, None, None, None, None, None,
                       own_share=own, others_share=others, share_cpus=2, stretch=stretch, contended=contended)


def step(i: int, t: float, ms: float) -> IterationStats:
    return IterationStats(iter=i, loss=2.0, lr=1e-3, ms_per_iter=ms, tokens_per_sec=1000.0, mfu=None, tokens_seen=i,
                          train_seconds=t, time=t)


def test_a_busy_machine_whose_cpus_this_process_does_not_wait_for_is_no_contention() -> None:
    assert contended_now(0.52, 1.9) is True
    assert contended_now(0.52, 1.05) is False  # a browser beside a trainer that never waits for a CPU
    assert contended_now(0.02, 2.5) is False  # its own threads outnumber the cores: nobody else to blame
    assert contended_now(None, 2.5) is None and contended_now(0.5, None) is None
    # a monitor left open after its run ended waits when it wakes, but it wanted 6% of a CPU: nothing is slowed
    assert contended_now(0.99, 2.8, own=0.01, cpus=2) is False and contended_now(0.52, 1.9, own=0.48, cpus=2) is True


def test_contention_starts_after_its_seconds_in_a_row_and_a_blip_neither_starts_nor_ends_it() -> None:
    watch = ContentionWatch(enter_seconds=5.0, leave_seconds=10.0)
    busy, quiet = Load(0.52, 2, None, 1.9), Load(0.03, 2, None, 1.01)
    assert watch.update(None, 0.0) is None  # nothing measured yet: unknown, not "no"
    assert watch.update(quiet, 1.0) is False
    for t in (2.0, 3.0, 4.0, 5.0, 6.0):
        assert watch.update(busy, t) is False  # 4 s of it: not yet
    assert watch.update(quiet, 7.0) is False  # a blip ends the streak...
    assert [watch.update(busy, t) for t in (8.0, 9.0, 10.0, 11.0, 12.0, 13.0)] == [False] * 5 + [True]  # ...5 s more
    assert watch.update(quiet, 14.0) is True and watch.update(busy, 15.0) is True  # one quiet second ends nothing
    assert [watch.update(quiet, t) for t in range(16, 27)] == [True] * 10 + [False]


def test_one_notice_when_it_starts_with_the_shares_the_wait_and_the_steps_and_one_when_it_ends() -> None:
    said: list[Any] = []
    notices = ContentionNotices(said.append)
    t = 100.0
    for i in range(30):  # quiet: 80 ms steps
        t += 0.08
        notices(step(i, t, 80.0))
        if i % 10 == 0:
            notices(TelemetrySnapshot(kind="cpu", data=cpu(0.03, 1.02, False), time=t))
    for k in range(20):  # a busy loop arrives: 400 ms steps, contended samples, the state flips after 5 of them
        t += 0.4
        notices(step(30 + k, t, 400.0))
        if k % 2:
            notices(TelemetrySnapshot(kind="cpu", data=cpu(0.52, 1.93, k > 10), time=t))
    assert len(said) == 1  # not one a second
    start = said[0]
    assert isinstance(start, Notice) and start.level == "warning" and start.topic == "contention"
    assert start.message.startswith("CPU contention: other processes used 52% of tuigpt's 2 CPUs (tuigpt 48%)")
    assert "wait for a CPU 48% of the time they are ready to run" in start.message and "not the model, set the speed" in start.message
    assert "steps take 400.0 ms (80.0 ms before)" in start.message
    assert lines_for(start)[0].text.startswith("warning: CPU contention:")  # the headless line, the events log
    assert alert_for(start) is not None and alert_for(start).kind == "contention"  # type: ignore[union-attr]
    for k in range(30):  # it leaves: the reader says so once its quiet seconds are up
        t += 0.5
        notices(step(50 + k, t, 80.0))
        notices(TelemetrySnapshot(kind="cpu", data=cpu(0.02, 1.01, k < 20), time=t))
    assert len(said) == 2
    end = said[1]
    assert end.level == "info" and end.topic == "contention" and alert_for(end) is None
    assert end.message.startswith("CPU contention over after ") and "other processes used 2% of tuigpt's 2 CPUs" in end.message
    assert end.message.endswith("steps 400.0 ms during it")  # the quiet steps while its end was confirmed are not
    notices(RunFinished(iter=80, reason=EndReason.DONE, best_val_loss=None, last_val_loss=None, wall_seconds=1.0,
                        train_seconds=1.0, eval_seconds=0.0, checkpoint_seconds=0.0, last_checkpoint=None,
                        tokens_seen=80, time=t))
    notices(TelemetrySnapshot(kind="cpu", data=cpu(0.99, 2.8, True), time=t + 1))  # the monitor stays open: silence
    assert len(said) == 2


# A reader on one CPU, in a session of its own raised above the rest of the box (Linux groups CPU time by session,
# "autogroup", before nice counts), so other processes on a loaded machine barely touch it: the busy loops it starts
# on the test's word, in its session on its CPU, are what contends. It prints one JSON line a reading, one a notice.
READER = textwrap.dedent("""
    import json, subprocess, sys, threading
    from tuigpt.run.events import TelemetrySnapshot
    from tuigpt.telemetry.contention import ContentionNotices, ContentionWatch
    from tuigpt.telemetry.cpu import CpuReader
    from tuigpt.telemetry.poller import TelemetryPoller

    def work():  # the "trainer": always runnable
        while True:
            sum(range(1000))

    threading.Thread(target=work, daemon=True).start()
    notices = ContentionNotices(lambda e: print(json.dumps({"notice": e.level, "message": e.message}), flush=True))

    def publish(event):
        if isinstance(event, TelemetrySnapshot):
            d = event.data
            print(json.dumps({"contended": d.contended, "others": d.others_share, "stretch": d.stretch}), flush=True)
        notices(event)

    reader = CpuReader(contention=ContentionWatch(enter_seconds=0.6, leave_seconds=1.0))
    TelemetryPoller(publish, {"cpu": reader}, interval=0.25).start()
    hogs = []
    try:
        for line in sys.stdin:  # "hogs": two busy loops beside it; "quiet": they end
            if line.strip() == "hogs":
                hogs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(2)]
            else:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
                hogs = []
    finally:
        for hog in hogs:
            hog.kill()
""")


def _alone_on(cpu: int) -> Any:
    def setup() -> None:
        os.sched_setaffinity(0, {cpu})
        try:
            with open("/proc/self/autogroup", "w") as f:  # this new session's share against the others': nice -15
                f.write("-15")
        except OSError:  # no autogroup, or not root: nice alone (the box's own load may then keep it contended)
            try:
                os.setpriority(os.PRIO_PROCESS, 0, -15)
            except OSError:
                pass
    return setup


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not os.path.exists("/proc/self/task"),
                    reason="needs CPU affinity and the kernel's scheduler statistics (Linux)")
def test_busy_loops_on_the_trainers_cpu_start_contention_and_their_end_ends_it(cli_env: dict) -> None:
    reader = subprocess.Popen([sys.executable, "-c", READER], cwd=REPO, env=cli_env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, start_new_session=True,
                              preexec_fn=_alone_on(max(os.sched_getaffinity(0))))
    seen: list[dict[str, Any]] = []

    def until(done: Any) -> dict[str, Any]:
        assert reader.stdout is not None
        for line in reader.stdout:  # (the reader's own pace: a line every 0.25 s, no sleeps here)
            seen.append(json.loads(line))
            if done(seen[-1]):
                return seen[-1]
            assert len(seen) < 400, seen[-20:]  # ~100 s: something is wrong
        raise AssertionError(f"the reader ended: {seen[-20:]}")

    def say(command: str) -> None:
        assert reader.stdin is not None
        reader.stdin.write(command + "\n")
        reader.stdin.flush()

    try:
        until(lambda r: r.get("contended") is False)  # measured, and not contended on its own CPU
        say("hogs")
        start = until(lambda r: "notice" in r)
        assert start["notice"] == "warning" and start["message"].startswith("CPU contention: other processes used")
        assert seen[-2]["contended"] is True, seen[-5:]  # the reading that said so, just before
        busy = [r for r in seen if r.get("contended")]
        assert busy and all(r["others"] > 0.2 and r["stretch"] >= 1.5 for r in busy), busy
        say("quiet")
        end = until(lambda r: "notice" in r)
        assert end["notice"] == "info" and end["message"].startswith("CPU contention over after "), end
        assert sum("notice" in r for r in seen) == 2, [r for r in seen if "notice" in r]
    finally:
        reader.kill()  # (its stdin closes: its busy loops end with it)
        reader.wait()
