"""A sink that cannot write: reported once, detached, never a line per event; metrics.jsonl failing says so once."""

from __future__ import annotations

import errno
from pathlib import Path

from support import mounted
from tuigpt.run.events import EventBus, IterationStats, Notice
from tuigpt.run.metrics_log import MetricsWriter, read_metrics, set_aside


def _iteration(i: int) -> IterationStats:
    return IterationStats(iter=i, loss=1.0, lr=1e-3, ms_per_iter=1.0, tokens_per_sec=1.0, mfu=None, tokens_seen=i,
                          train_seconds=0.0)


def test_a_failing_sink_is_reported_once_and_detached() -> None:
    bus = EventBus()
    calls: list[object] = []
    seen: list[object] = []

    def broken(event: object) -> None:
        calls.append(event)
        raise OSError(errno.ENOSPC, "No space left on device")

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    for i in range(1, 101):
        bus.publish(_iteration(i))
    assert len(calls) == 1, "the broken sink is not called again"
    errors = [e for e in seen if isinstance(e, Notice)]
    assert len(errors) == 1 and errors[0].level == "error" and "No space left" in errors[0].message
    assert sum(isinstance(e, IterationStats) for e in seen) == 100, "the others go on receiving every event"


def _big(i: int) -> Notice:  # a long record: the disk fills in the middle of one
    return Notice(level="info", message=f"{i} " + "x" * 3000)


def test_a_metrics_writer_on_a_full_disk_reports_once_never_tears_a_line_and_its_close_never_raises(
        tmp_path: Path) -> None:
    failures: list[str] = []
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=64k", "tmpfs") as disk:
        path = disk / "metrics.jsonl"
        writer = MetricsWriter(path, 1, on_failure=failures.append)
        for i in range(1, 100):
            writer(_big(i))
        assert len(failures) == 1 and "No space left on device" in failures[0] and "metrics.jsonl" in failures[0]
        assert writer.error is not None
        writer.close()  # nothing left to raise
        raw = path.read_bytes()
        assert raw.endswith(b"\n"), "a torn last line: a reader would see half a record"
        records = read_metrics(path)
        assert len(records) == raw.count(b"\n") > 0 and [int(r["message"].split()[0]) for r in records] == list(
            range(1, len(records) + 1))


def test_a_metrics_writer_without_a_handler_raises_once_so_the_bus_detaches_it(tmp_path: Path) -> None:
    bus = EventBus()
    seen: list[object] = []
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=16k", "tmpfs") as disk:
        writer = MetricsWriter(disk / "metrics.jsonl", 1)
        bus.subscribe(writer)
        bus.subscribe(seen.append)
        for i in range(1, 40):
            bus.publish(_big(i))
        notices = [e.message for e in seen if isinstance(e, Notice) and e.level == "error"]
        assert len(notices) == 1 and "No space left" in notices[0]
        writer.close()
        assert (disk / "metrics.jsonl").read_bytes().endswith(b"\n")


def test_a_history_no_checkpoint_continues_is_moved_aside(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    assert set_aside(metrics) is None
    metrics.write_text('{"type":"iter","iter":1,"loss":1.0}\n')
    moved = set_aside(metrics)
    assert moved is not None and moved.name.startswith("metrics.unfinished-") and not metrics.exists()
    assert read_metrics(moved)[0]["iter"] == 1
    metrics.write_text('{"type":"iter","iter":1,"loss":2.0}\n')
    second = set_aside(metrics)
    assert second is not None and second != moved and moved.exists()  # never over an earlier one
