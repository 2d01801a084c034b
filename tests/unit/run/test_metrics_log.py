"""metrics.jsonl: append-only records, torn lines ignored and repaired, history cut on resume."""

from __future__ import annotations

import json
from pathlib import Path

from tuigpt.run.events import EvalResult, IterationStats, Notice
from tuigpt.run.metrics_log import MetricsWriter, cut_after, load_history, read_metrics
from tuigpt.run.files import repair_torn_tail


def stats(i: int) -> IterationStats:
    return IterationStats(iter=i, loss=3.0 - i * 0.01, lr=1e-3, ms_per_iter=10.0, tokens_per_sec=1000.0, mfu=None,
                          tokens_seen=i * 100, train_seconds=i * 0.01)


def test_writer_keeps_every_log_interval_and_every_eval(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    writer = MetricsWriter(path, log_interval=5)
    for i in range(1, 21):
        writer(stats(i))
    writer(EvalResult(iter=20, train_loss=2.0, val_loss=2.1, best_val_loss=2.1, is_best=True, seconds=0.5))
    writer(Notice(level="warning", message="hot"))
    # every line is on disk and parseable before close (flushed per line)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["iter"] for r in records if r["type"] == "iter"] == [5, 10, 15, 20]
    assert records[-2]["type"] == "eval" and records[-2]["val_loss"] == 2.1
    assert records[-1] == {"type": "notice", "time": records[-1]["time"], "level": "warning", "message": "hot", "topic": ""}
    writer.close()


def test_a_start_stopped_before_its_run_leaves_no_metrics_file_but_a_resume_keeps_its_history(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    fresh = MetricsWriter(path, log_interval=1)
    fresh(Notice(level="info", message="a telemetry reading came first"))
    fresh.discard()
    assert not path.exists()  # the run folder it was in can go too (the lock removes it when empty)
    kept = MetricsWriter(path, log_interval=1)
    kept(stats(1))
    kept.close()
    resumed = MetricsWriter(path, log_interval=1, resume_at=1)
    resumed.discard()
    assert [r["iter"] for r in read_metrics(path)] == [1]  # a resume stopped early loses nothing


def test_torn_last_line_is_ignored_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"type":"iter","iter":1}\n{"type":"iter","iter":2}\n{"type":"it')
    assert [r["iter"] for r in read_metrics(path)] == [1, 2]
    writer = MetricsWriter(path, log_interval=1)  # the next run repairs before appending
    writer(stats(3))
    writer.close()
    assert [r["iter"] for r in read_metrics(path)] == [1, 2, 3]
    assert path.read_text().count("\n") == 3


def test_repair_of_a_file_that_is_only_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"ty')
    repair_torn_tail(path)
    assert path.read_text() == ""


def test_cut_after_truncates_only_the_lost_stretch(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    lines = [{"type": "start"}]
    for i in range(1, 3001):
        lines.append({"type": "iter", "iter": i, "pad": "x" * (i % 97)})  # odd sizes cross block boundaries
        if i % 500 == 0:
            lines.append({"type": "eval", "iter": i})
            lines.append({"type": "telemetry", "kind": "cpu"})
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"type":"it')  # and a torn tail
    cut_after(path, upto_iter=2000)
    records = read_metrics(path)
    assert records[-1] == {"type": "telemetry", "kind": "cpu"}  # after the eval at 2000, kept
    assert [r["iter"] for r in records if r["type"] == "iter"] == list(range(1, 2001))
    cut_after(path, upto_iter=2000)  # nothing more to cut
    assert read_metrics(path) == records
    cut_after(path, upto_iter=0)
    assert read_metrics(path) == [{"type": "start"}]


def test_history_thins_iterations_but_keeps_evals_and_the_recent_stretch(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    with open(path, "w") as f:
        for i in range(1, 50_001):
            f.write(json.dumps({"type": "iter", "iter": i, "loss": 1.0}) + "\n")
            if i % 1000 == 0:
                f.write(json.dumps({"type": "eval", "iter": i, "val_loss": 1.0}) + "\n")
                f.write(json.dumps({"type": "telemetry", "kind": "cpu"}) + "\n")
    records = load_history(path, max_iter_points=5_000, recent=1_000)
    iters = [r["iter"] for r in records if r["type"] == "iter"]
    assert 4_000 <= len(iters) <= 5_100
    assert iters[0] < 100 and iters[-1] == 50_000
    assert iters[-1000:] == list(range(49_001, 50_001))
    assert [r["iter"] for r in records if r["type"] == "eval"] == list(range(1000, 50_001, 1000))
    assert not [r for r in records if r["type"] == "telemetry"]


def test_load_history_is_bounded_for_any_mix_of_records(tmp_path: Path) -> None:
    """Notices, checkpoints, samples and evals by the ten thousand: the last of each kept, evals thinned with the
    best kept, nothing else grows with the file."""
    from tuigpt.run.metrics_log import KEEP_LAST, load_history

    path = tmp_path / "metrics.jsonl"
    lines = []
    for i in range(20_000):
        lines.append(f'{{"type":"notice","level":"warning","message":"n{i}","time":{i}}}')
        lines.append(f'{{"type":"checkpoint","iter":{i},"path":"p","reason":"eval","seconds":0.1,"time":{i}}}')
        lines.append(f'{{"type":"sample","iter":{i},"prompt":"","text":"t","seconds":0.1,"time":{i}}}')
        best = "true" if i == 777 else "false"
        val = 1.0 if i == 777 else 2.0
        lines.append(f'{{"type":"eval","iter":{i},"train_loss":2.0,"val_loss":{val},"best_val_loss":1.0,'
                     f'"is_best":{best},"seconds":0.1,"time":{i}}}')
        lines.append(f'{{"type":"telemetry","kind":"cpu","data":{{}},"time":{i}}}')
    path.write_text("\n".join(lines) + "\n")
    records = load_history(path, max_eval_points=1000)
    kinds = [r["type"] for r in records]
    assert kinds.count("notice") == KEEP_LAST[b"notice"] and records[kinds.index("notice")]["message"] == \
        f"n{20_000 - KEEP_LAST[b'notice']}"
    assert kinds.count("checkpoint") == KEEP_LAST[b"checkpoint"] and kinds.count("sample") == KEEP_LAST[b"sample"]
    evals = [r for r in records if r["type"] == "eval"]
    assert 900 <= len(evals) <= 1300 and evals[-1]["iter"] == 19_999
    assert any(r["iter"] == 777 and r["is_best"] for r in evals), "the best eval stays on the chart"
    assert "telemetry" not in kinds


def test_telemetry_stops_going_to_the_file_when_the_run_ends(tmp_path: Path) -> None:
    """A finished monitor left open kept appending its CPU readings: 66 records in 6 minutes (issue 27)."""
    from tuigpt.run.events import RunFinished, TelemetrySnapshot
    from tuigpt.run.readings import CpuSnapshot

    reading = CpuSnapshot(*[None] * 5, {}, *[None] * 8)

    path = tmp_path / "metrics.jsonl"
    writer = MetricsWriter(path, log_interval=1, telemetry_every=10.0)
    writer(TelemetrySnapshot(kind="cpu", data=reading, time=0.0))
    writer(RunFinished(iter=1, reason="done", best_val_loss=None, last_val_loss=None, wall_seconds=1.0,
                       train_seconds=1.0, eval_seconds=0.0, checkpoint_seconds=0.0, last_checkpoint=None,
                       tokens_seen=1, time=5.0))
    for minute in range(1, 7):  # the monitor still samples: the screen shows it, the run's history does not grow
        writer(TelemetrySnapshot(kind="cpu", data=reading, time=60.0 * minute))
    writer.close()
    assert [r["type"] for r in read_metrics(path)] == ["telemetry", "finish"]
