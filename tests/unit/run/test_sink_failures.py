"""A sink that cannot write: reported once, detached, never a line per event; metrics.jsonl failing says so once."""

from __future__ import annotations

import errno
from pathlib import Path

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


class _FullDisk:
    """A file whose writes fail after ``ok`` of them, as a disk that fills up."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.closed = False

    def write(self, data: bytes) -> int:
        if self.ok <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.ok -= 1
        return len(data)

    def flush(self) -> None:
        if self.ok < 0:
            raise OSError(errno.ENOSPC, "No space left on device")

    def fileno(self) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        self.closed = True


def test_a_metrics_writer_on_a_full_disk_reports_once_and_its_close_never_raises(tmp_path: Path) -> None:
    failures: list[str] = []
    writer = MetricsWriter(tmp_path / "metrics.jsonl", 1, on_failure=failures.append)
    writer._file = _FullDisk(ok=3)  # type: ignore[assignment]
    for i in range(1, 50):
        writer(_iteration(i))
    assert len(failures) == 1 and "No space left on device" in failures[0] and "metrics.jsonl" in failures[0]
    assert writer.error is not None
    writer.close()  # nothing left to raise


def test_a_metrics_writer_without_a_handler_raises_once_so_the_bus_detaches_it(tmp_path: Path) -> None:
    bus = EventBus()
    seen: list[object] = []
    writer = MetricsWriter(tmp_path / "metrics.jsonl", 1)
    writer._file = _FullDisk(ok=0)  # type: ignore[assignment]
    bus.subscribe(writer)
    bus.subscribe(seen.append)
    for i in range(1, 20):
        bus.publish(_iteration(i))
    assert [e.message for e in seen if isinstance(e, Notice)] == [
        next(e.message for e in seen if isinstance(e, Notice))]
    writer.close()


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
