"""Reading a run back the way each dashboard package itself does: TensorBoard's event reader, W&B's transaction
log inspector (`wandb leet inspect`) on the offline run, and trackio's local store. No tuigpt code reads here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuigpt.run.metrics_log import read_metrics


def jsonl_series(run_dir: Path, record: str, field: str) -> list[tuple[int, float]]:
    """(iter, value) of one field of one record type, as metrics.jsonl holds it."""
    return [(r["iter"], r[field]) for r in read_metrics(run_dir / "metrics.jsonl")
            if r["type"] == record and r.get(field) is not None]


def tensorboard_scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    reader.Reload()
    return [(s.step, s.value) for s in reader.Scalars(tag)]


def tensorboard_texts(logdir: Path, tag: str) -> list[tuple[int, str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    reader.Reload()
    return [(t.step, t.tensor_proto.string_val[0].decode()) for t in reader.Tensors(tag)]


def wandb_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of every offline W&B session of a run folder, oldest session first, as `wandb leet inspect
    --json` reads its .wandb transaction logs."""
    records = []
    for log in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        done = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        records += [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return records


def wandb_history(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of one series in the W&B history."""
    return [(r["history"]["step"]["num"], r["history"]["item"][key]) for r in wandb_records(run_dir)
            if r["type"] == "history" and key in r["history"]["item"]]


def trackio_logs(project: str, run: str, run_id: str | None = None) -> list[dict[str, Any]]:
    from trackio.sqlite_storage import SQLiteStorage

    return SQLiteStorage.get_logs(project, run, run_id=run_id)
