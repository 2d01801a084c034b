"""`tuigpt runs`: states from file ends and a live socket, fast on a big file."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tuigpt.cli.main import main
from tuigpt.control.server import ControlServer
from tuigpt.run.events import EventBus
from tuigpt.control.wire import ping
from tuigpt.run.fmt import ago
from tuigpt.run.status import summarize


def write_run(root: Path, name: str, records: list[dict], n_iters: int = 0) -> Path:
    run = root / name
    run.mkdir(parents=True)
    start = {"type": "start", "time": 1.0, "max_iters": 5000, "device": "cuda:0", "run_name": name}
    lines = [json.dumps(start)]
    lines += [json.dumps({"type": "iter", "iter": i, "loss": 2.0, "tokens_per_sec": 12_345.0, "time": 2.0})
              for i in range(n_iters)]
    lines += [json.dumps(r) for r in records]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_runs_table(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    root = tmp_path / "checkpoints"
    write_run(root, "done-run", [{"type": "eval", "iter": 100, "best_val_loss": 1.75},
                                 {"type": "finish", "iter": 100, "reason": "done", "best_val_loss": 1.5}], n_iters=100)
    write_run(root, "failed-run", [{"type": "failed", "iter": 7, "message": "boom"}], n_iters=8)
    write_run(root, "killed-run", [], n_iters=50)
    live = write_run(root, "live-run", [{"type": "state", "state": "RUNNING", "iter": 3}], n_iters=4)
    bus = EventBus()
    server = ControlServer(live, lambda c: None, bus.publish, bus.subscribe)
    server.start()
    old = time.time() - 3 * 3600
    os.utime(root / "done-run" / "metrics.jsonl", (old, old))
    try:
        assert main(["runs", "--out_dir", str(root)]) == 0
    finally:
        server.stop()
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:5]}
    assert out.splitlines()[0].split()[:3] == ["RUN", "STATE", "ITER"]
    assert rows["done-run"][1:6] == ["done", "100/5,000", "-", "-", "1.5000"] and "3 h ago" in out  # no ETA, no val
    assert rows["failed-run"][1] == "failed"
    assert rows["killed-run"][1:3] == ["interrupted", "49/5,000"]
    assert rows["live-run"][1] == "running" and "12.3k" in rows["live-run"] and "cuda:0" in rows["live-run"]
    assert "watch one: tuigpt watch" in out


def test_runs_reads_only_the_ends_of_a_big_file(tmp_path: Path) -> None:
    run = write_run(tmp_path, "big", [{"type": "finish", "iter": 299_999, "reason": "stopped", "best_val_loss": None}],
                    n_iters=300_000)
    t = time.perf_counter()
    summary = summarize(run, ping)
    assert time.perf_counter() - t < 0.5
    assert summary.state == "stopped" and summary.iteration == 299_999 and summary.max_iters == 5000


def test_relative_times_and_a_missing_out_dir(tmp_path: Path) -> None:
    assert ago(5) == "5 s ago" and ago(600) == "10 min ago" and ago(7200) == "2 h ago" and ago(5 * 86400) == "5 d ago"
    assert main(["runs", "--out_dir", str(tmp_path / "none")]) == 2


def test_runs_with_a_target_loss_show_where_the_loss_reaches_it(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    root = tmp_path / "checkpoints"
    run = root / "aiming"
    run.mkdir(parents=True)
    start = {"type": "start", "time": 1.0, "max_iters": 5000, "device": "cpu", "run_name": "aiming", "run_dir": str(run),
             "config_path": None, "config": {"target_loss": 1.35, "log_interval": 10}, "n_params": 1, "dtype": "float32",
             "dtype_reason": "", "start_iter": 0, "tokens_per_iter": 1000, "flops_per_token": 1, "peak_flops": None,
             "peak_label": "", "eval_interval": 100, "resumed": False}
    lines = [start]
    for i in range(10, 2001, 10):
        loss = 1.2 + 40.0 * (i * 1000) ** -0.35
        lines.append({"type": "iter", "time": 2.0 + i, "iter": i, "loss": loss + 0.3, "lr": 1e-3, "ms_per_iter": 100.0,
                      "tokens_per_sec": 1e4, "mfu": None, "tokens_seen": i * 1000, "train_seconds": i / 10})
        if i % 100 == 0:
            lines.append({"type": "eval", "time": 2.0 + i, "iter": i, "train_loss": loss + 0.3, "val_loss": loss,
                          "best_val_loss": loss, "is_best": True, "seconds": 1.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert main(["runs", "--out_dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[-1] == "TARGET"
    row = out.splitlines()[1]
    assert "interrupted" in row and "loss 1.35 ≈ iter " in row and "[val fit]" in row
    assert "→" not in row  # a run that is not running gets no clock time


def test_runs_and_watch_find_a_run_from_any_directory(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    """The README's "from any terminal": the run started in one project is listed from another directory."""
    from tuigpt.run.rundir import resolve_run_dir
    from tuigpt.run.runindex import remember_run

    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path / "cache"))
    run = write_run(tmp_path / "project" / "checkpoints", "far-run", [], n_iters=3)
    remember_run(run)  # what a run does when it starts
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("far-run"))
    assert row.split()[-1] == str(run.resolve())  # where it lives, since it is not below this directory
    assert f"watch one: tuigpt watch {run.resolve()}" in out
    assert resolve_run_dir("far-run") == run


def test_one_run_with_wrong_typed_fields_does_not_break_the_listing(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    root = tmp_path / "checkpoints"
    write_run(root, "good-run", [{"type": "finish", "iter": 100, "reason": "done", "best_val_loss": 1.5}], n_iters=3)
    bad = write_run(root, "bad-run", [
        {"type": "iter", "iter": "x", "loss": [1], "tokens_per_sec": "fast", "time": 3.0},
        {"type": "eval", "iter": "200", "train_loss": 1.0, "val_loss": {}, "best_val_loss": [1.0], "is_best": 1},
        {"type": "state", "state": ["PAUSED"], "iter": 4},
        {"type": "finish", "iter": 3.5, "reason": 7, "best_val_loss": "low"},
    ])
    with open(bad / "metrics.jsonl", "a") as f:  # a start whose config and target are junk, too
        f.write(json.dumps({"type": "start", "max_iters": "many", "device": 5, "config": [1, 2]}) + "\n")
        f.write(json.dumps({"type": "start", "max_iters": 9, "device": "cpu", "config": {"target_loss": "x"}}) + "\n")
    assert main(["runs", "--out_dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "good-run" in out and "bad-run" in out and "Traceback" not in out


def test_a_record_with_a_field_of_the_wrong_type_is_no_event() -> None:
    from tuigpt.run.records import event_from_record

    assert event_from_record({"type": "iter", "iter": "x", "loss": 2.0, "lr": 1e-3, "ms_per_iter": 1.0,
                              "tokens_per_sec": 1.0, "mfu": None, "tokens_seen": 1, "train_seconds": 1.0}) is None
    eval_ = {"type": "eval", "iter": 5, "train_loss": None, "val_loss": None, "best_val_loss": 2.0, "is_best": False,
             "seconds": 0.1}  # a NaN eval is written as null: it reads back
    assert event_from_record(eval_) is not None
    assert event_from_record({**eval_, "is_best": 1}) is None and event_from_record({**eval_, "iter": True}) is None


def _plan_record(now: float, **kw) -> dict:  # noqa: ANN003
    plan = {"type": "plan", "time": now, "iter": 400, "total_iters": 2000, "cooldown_iter": 1600,
            "cooldown_at": now + 1200, "end_at": now + 1500, "deadline": now + 1500, "kind": "budget",
            "length": 1800.0, "step_ms": 40.0, "step_spread": 0.05, "reason": "eval"}
    plan.update(kw)
    return plan


def test_runs_show_a_planned_runs_cooldown_and_end_and_whether_it_ended_on_time(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from tuigpt.run.plan import clock

    root = tmp_path / "checkpoints"
    now = time.time()
    live = write_run(root, "tonight", [_plan_record(now), {"type": "state", "state": "RUNNING", "iter": 400}],
                     n_iters=401)
    finished = now - 100
    write_run(root, "last-night", [_plan_record(finished - 1800, cooldown_begun=True, cooldown_at=None,
                                                deadline=finished + 2, end_at=finished),
                                   {"type": "finish", "iter": 2000, "reason": "done", "best_val_loss": 1.5,
                                    "time": finished}], n_iters=10)
    write_run(root, "plain", [], n_iters=10)
    bus = EventBus()
    server = ControlServer(live, lambda c: None, bus.publish, bus.subscribe)
    server.start()
    try:
        assert main(["runs", "--out_dir", str(root)]) == 0
    finally:
        server.stop()
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[-1] == "PLAN"
    rows = {line.split()[0]: line for line in out.splitlines()[1:4]}
    assert "400/2,000" in rows["tonight"]  # the plan's iterations, not the start's max_iters
    assert f"cooldown ~{clock(now + 1200, now, 1800)}, done ~{clock(now + 1500, now, 1800)}" in rows["tonight"]
    assert f"ended {clock(finished, now, 1800)}, on time (budget {clock(finished + 2, now, 1800)})" in rows["last-night"]
    assert rows["plain"].rstrip().endswith("-")


# ---------------------------------------------------------------- the morning: ETA, last val, best, --status

VALS = [2.0, 1.8, 1.7, 1.75, 1.72, 1.73]  # evals at 100..600: the best at 300, then 3 evals without a better one


def full_run(root: Path, name: str, now: float, ended: bool = False, filler: int = 0) -> tuple[Path, list[dict]]:
    """A run as the trainer writes it: a start, iterations every 10 (100 ms each), an eval every 100 (1 s each);
    ``filler`` telemetry records after the best eval push it out of the file's tail."""
    run = root / name
    run.mkdir(parents=True)
    t0 = now - 70.0
    records: list[dict] = [{"type": "start", "time": t0, "max_iters": 5000, "device": "cpu", "run_name": name,
                            "run_dir": str(run), "config_path": None, "config": {"log_interval": 10}, "n_params": 1,
                            "dtype": "float32", "dtype_reason": "", "start_iter": 0, "tokens_per_iter": 1000,
                            "flops_per_token": 1, "peak_flops": None, "peak_label": "", "eval_interval": 100,
                            "resumed": False}]
    best = 9.0
    for i in range(10, 601, 10):
        records.append({"type": "iter", "time": t0 + i / 10, "iter": i, "loss": 2.0, "lr": 1e-3, "ms_per_iter": 100.0,
                        "tokens_per_sec": 1e4, "mfu": None, "tokens_seen": i * 1000, "train_seconds": i / 10})
        if i % 100 == 0:
            val = VALS[i // 100 - 1]
            records.append({"type": "eval", "time": t0 + i / 10, "iter": i, "train_loss": val, "val_loss": val,
                            "best_val_loss": min(best, val), "is_best": val < best, "seconds": 1.0})
            best = min(best, val)
            if i == 300:
                records += [{"type": "telemetry", "time": t0, "kind": "gpu", "data": {"status": "x" * 1000}}] * filler
    if ended:
        records.append({"type": "finish", "time": now - 60, "iter": 600, "reason": "stopped", "best_val_loss": 1.7,
                        "wall_seconds": 70.0, "train_seconds": 60.0, "eval_seconds": 6.0, "checkpoint_seconds": 0.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run, records


def test_runs_say_when_a_run_will_be_done_its_last_val_and_change_and_its_best_and_since_when(tmp_path: Path,
                                                                                             capsys) -> None:  # noqa: ANN001
    from tuigpt.run import fmt
    from tuigpt.run.model import RunModel
    from tuigpt.run.records import event_from_record

    root = tmp_path / "checkpoints"
    now = time.time()
    live, records = full_run(root, "tonight", now)
    full_run(root, "yesterday", now, ended=True)
    bus = EventBus()
    server = ControlServer(live, lambda c: None, bus.publish, bus.subscribe)
    server.start()
    try:
        summary = summarize(live, ping)
        assert main(["runs", "--out_dir", str(root)]) == 0
    finally:
        server.stop()
    model = RunModel()  # the ETA the monitor shows for these events: `runs` calls the same, it has no formula
    for record in records:
        model.record(event_from_record(record), words=False)  # type: ignore[arg-type]
    eta = model.snapshot().progress.eta_seconds
    assert eta is not None and summary.eta_seconds == eta and summary.eta_at == records[-1]["time"] + eta
    assert (summary.val_loss, summary.val_iter, summary.best_val_loss, summary.best_iter) == (1.73, 600, 1.7, 300)
    assert summary.val_change is not None and round(summary.val_change, 4) == 0.01 and summary.evals_since_best == 3
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:9] == ["RUN", "STATE", "ITER", "ETA", "VAL", "(CHANGE)", "BEST", "VAL@ITER",
                                               "TOK/S"]
    rows = {line.split()[0]: line for line in out.splitlines()[1:3]}
    assert f"running  600/5,000  {fmt.clock(summary.eta_at, now)} (" in rows["tonight"]  # when, and how long until
    for row in rows.values():
        assert "1.7300 (+0.0100)" in row and "1.7000@300, not improved in 3 evals" in row
    assert "yesterday  stopped  600/5,000  -  " in rows["yesterday"]  # an ended run has no ETA


def test_the_best_eval_far_back_in_a_long_file_is_found(tmp_path: Path) -> None:
    run, _ = full_run(tmp_path, "long", time.time(), ended=True, filler=600)  # ~600 KB after the best
    assert run.joinpath("metrics.jsonl").stat().st_size > 2 * 256 * 1024
    summary = summarize(run, ping)
    assert (summary.best_iter, summary.evals_since_best, summary.val_loss) == (300, 3, 1.73)


def test_status_is_one_short_stable_ascii_line_for_a_tmux_status_bar(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from tuigpt.run.fmt import clock

    root = tmp_path / "checkpoints"
    now = time.time()
    live, _ = full_run(root, "tonight", now)
    ended, _ = full_run(root, "yesterday", now, ended=True)
    bus = EventBus()
    server = ControlServer(live, lambda c: None, bus.publish, bus.subscribe)
    server.start()
    try:
        lines = []
        for _ in range(2):
            assert main(["runs", "--out_dir", str(root), "--status", "tonight"]) == 0
            lines.append(capsys.readouterr().out)
    finally:
        server.stop()
    assert lines[0] == lines[1]  # nothing changed, nothing moves: tmux redraws it in place
    line = lines[0]
    assert line.endswith("\n") and line.count("\n") == 1 and line.isascii() and "\x1b" not in line
    assert len(line) <= 90, line
    summary = summarize(live, lambda _: True)
    assert summary.eta_at is not None
    assert line == f"tonight 600/5,000 | val 1.7300 (+0.0100) | best 1.7000@300 (3 evals ago) | ETA {clock(summary.eta_at)}\n"
    assert main(["runs", "--status", str(ended)]) == 0  # a directory works too; an ended run says when it ended
    assert capsys.readouterr().out.startswith("yesterday stopped 600/5,000 | val 1.7300 (+0.0100) | best 1.7000@300 "
                                              "(3 evals ago) | ended ")
    server = ControlServer(ended, lambda c: None, bus.publish, bus.subscribe)
    server.start()  # its monitor is still open after the run ended: the run is no longer running
    try:
        assert main(["runs", "--out_dir", str(root), "--status", "yesterday"]) == 0
    finally:
        server.stop()
    assert capsys.readouterr().out.startswith("yesterday stopped 600/5,000 | ")
    assert main(["runs", "--out_dir", str(root), "--status"]) == 0  # left out: the most recently updated run
    assert capsys.readouterr().out.split()[0] in ("tonight", "yesterday")


def test_status_of_a_run_that_does_not_exist_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    root = tmp_path / "checkpoints"
    full_run(root, "tonight", time.time())
    assert main(["runs", "--out_dir", str(root), "--status", "tonihgt"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "tonihgt" in captured.err
    assert "Traceback" not in captured.err
    assert main(["runs", "--out_dir", str(root), "--status", "tonight", "--json"]) == 2  # one or the other


def test_a_mistyped_run_name_gets_a_did_you_mean(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """`tuigpt report shakspeare_char_tiny` said only that no such run exists."""
    from tuigpt.run.errors import UserError
    from tuigpt.run.rundir import resolve_run_dir

    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path / "cache"))  # an empty run index
    root = tmp_path / "checkpoints"
    write_run(root, "shakespeare_char_tiny", [])
    with pytest.raises(UserError, match=r"\(did you mean shakespeare_char_tiny\? see `tuigpt runs`\)"):
        resolve_run_dir("shakspeare_char_tiny", str(root))
    with pytest.raises(UserError) as other:
        resolve_run_dir("gpt2_overnight", str(root))
    assert "did you mean" not in str(other.value)
