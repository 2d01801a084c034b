"""log_to: a headless run of the tiny config goes to TensorBoard, W&B (offline) and trackio, and each package reads
back what metrics.jsonl holds; --resume continues the same three runs; a dashboard that breaks mid-run (a real
full disk under TensorBoard's writer) is one line and training goes on.

The packages run offline with their files under a private folder (conftest's OFFLINE_PACKAGES_ENV)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, TINY
from support.corpus import shakespeare
from support.dashboards import (
    jsonl_series,
    tensorboard_scalars,
    tensorboard_texts,
    trackio_logs,
    wandb_history,
    wandb_records,
)
from support import free_port
from support import mounted

from tuigpt.run.metrics_log import read_metrics

pytest.importorskip("tensorboard")  # the test extra installs all three; a bare install skips here, saying why
pytest.importorskip("wandb")
pytest.importorskip("trackio")


def _train(tmp_path: Path, *extra: str, env: dict[str, str] | None = None,
           **values: object) -> subprocess.CompletedProcess:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "out_dir": str(tmp_path / "runs"), "run_name": "tiny",
                                      "data_path": str(shakespeare()), "log_to": ["tensorboard", "wandb", "trackio"],
                                      "log_project": "dash", "sample_every_eval": True, **values}))
    env = dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "tuigpt", str(config), "--headless", *extra], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=240)


def _float32(series: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """TensorBoard keeps scalars as float32."""
    return [(step, float(np.float32(value))) for step, value in series]


def test_each_dashboard_reads_back_what_metrics_jsonl_holds_and_a_resume_continues_the_same_runs(
        tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    first = _train(tmp_path, env=_without_wandb_mode(tmp_path, TMPDIR=str(tmp_path / "tmp")),  # as a user not
                   telemetry_interval=0.5)                                                      # logged in
    assert first.returncode == 0, first.stderr + first.stdout
    left = sorted(p.name for p in (tmp_path / "tmp").iterdir())
    assert not [name for name in left if name.startswith("tmp")], f"temporary directories left behind: {left}"
    run_dir = tmp_path / "runs" / "tiny"
    out = first.stdout
    assert f"info: log_to tensorboard: {run_dir / 'tensorboard'}" in out
    assert f"info: log_to wandb: offline (not logged in) in {run_dir / 'wandb'}; upload it with: wandb sync " \
           f"{run_dir / 'wandb'}/offline-run-*" in out
    assert "info: log_to trackio: project dash, run tiny in" in out
    assert "Trackio" not in out + first.stderr, "the packages' own lines go to dashboards.log"
    assert "Trackio project initialized" in (run_dir / "dashboards.log").read_text()

    loss = jsonl_series(run_dir, "iter", "loss")
    val = jsonl_series(run_dir, "eval", "val_loss")
    assert [i for i, _ in loss] == list(range(1, 11)) and [i for i, _ in val] == [0, 5, 10]
    assert tensorboard_scalars(run_dir / "tensorboard", "train/loss") == _float32(loss)
    assert tensorboard_scalars(run_dir / "tensorboard", "eval/val_loss") == _float32(val)
    assert wandb_history(run_dir, "train/loss") == loss
    assert wandb_history(run_dir, "eval/val_loss") == val
    logs = trackio_logs("dash", "tiny")
    assert [(r["step"], r["train/loss"]) for r in logs if "train/loss" in r] == loss
    assert [(r["step"], r["eval/val_loss"]) for r in logs if "eval/val_loss" in r] == val

    # health numbers, telemetry and samples go too
    grad = jsonl_series(run_dir, "iter", "grad_norm")
    assert wandb_history(run_dir, "health/grad_norm") == grad
    assert [(r["step"], r["health/grad_norm"]) for r in logs if "health/grad_norm" in r] == grad
    rss = [r["data"]["process_rss_bytes"] for r in read_metrics(run_dir / "metrics.jsonl")
           if r["type"] == "telemetry" and r["kind"] == "cpu"]
    tensorboard_rss = [v for _, v in tensorboard_scalars(run_dir / "tensorboard", "cpu/process_rss_bytes")]
    assert rss and tensorboard_rss == [float(np.float32(v)) for v in rss], (tensorboard_rss, rss)
    assert [r["cpu/process_rss_bytes"] for r in logs if "cpu/process_rss_bytes" in r] == rss
    samples = [r for r in json.loads("[" + ",".join(
        line for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"type":"sample"' in line) + "]")]
    assert [step for step, _ in tensorboard_texts(run_dir / "tensorboard", "samples")] == [s["iter"] for s in samples]
    assert [text for text in tensorboard_texts(run_dir / "tensorboard", "samples")][0][1].strip() != ""
    assert [r["samples"] for r in logs if "samples" in r] == [s["prompt"] + s["text"] for s in samples]
    wandb_id = json.loads((run_dir / "dashboards.json").read_text())["wandb"]["id"]
    assert any(r["type"] == "run" and r["run"]["run_id"] == wandb_id and r["run"]["project"] == "dash"
               for r in wandb_records(run_dir))

    resumed = _train(tmp_path, "--resume", max_iters=15)  # conftest's WANDB_MODE=offline, as a user may set it
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "info: log_to wandb: offline (WANDB_MODE=offline)" in resumed.stdout
    loss = jsonl_series(run_dir, "iter", "loss")
    assert [i for i, _ in loss] == list(range(1, 16))
    assert tensorboard_scalars(run_dir / "tensorboard", "train/loss") == _float32(loss), "the same directory, each once"
    sessions = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(sessions) == 2 and all(s.name.endswith(wandb_id) for s in sessions), "the same W&B run id"
    assert wandb_history(run_dir, "train/loss") == loss  # `wandb sync` uploads the two sessions in order
    trackio_id = json.loads((run_dir / "dashboards.json").read_text())["trackio"]["id"]
    logs = trackio_logs("dash", "tiny", run_id=trackio_id)
    assert [(r["step"], r["train/loss"]) for r in logs if "train/loss" in r] == loss, "the same trackio run"
    assert "Resumed existing run: tiny" in (run_dir / "dashboards.log").read_text()


def test_a_dashboard_added_on_resume_first_copies_the_earlier_history(tmp_path: Path) -> None:
    first = _train(tmp_path, log_to=[])
    assert first.returncode == 0, first.stderr
    resumed = _train(tmp_path, "--resume", "--log_to=tensorboard", max_iters=15)
    assert resumed.returncode == 0, resumed.stderr
    run_dir = tmp_path / "runs" / "tiny"
    assert "log_to tensorboard: copied the run's earlier history from metrics.jsonl" in resumed.stdout
    loss = jsonl_series(run_dir, "iter", "loss")
    assert tensorboard_scalars(run_dir / "tensorboard", "train/loss") == _float32(loss)
    assert [i for i, _ in loss] == list(range(1, 16))


def test_a_dashboard_that_fails_mid_run_is_one_line_and_training_goes_on(tmp_path: Path) -> None:
    """TensorBoard's folder on a 64 KiB disk of its own: its writer fills it within a few iterations."""
    logdir = tmp_path / "runs" / "tiny" / "tensorboard"
    with mounted(logdir, "-t", "tmpfs", "-o", "size=64k", "tmpfs"):
        done = _train(tmp_path, max_iters=400, eval_interval=100, log_interval=1, log_to=["tensorboard"])
        assert done.returncode == 0, done.stderr + done.stdout
        lines = [line for line in done.stdout.splitlines() if "log_to tensorboard" in line]
        assert len(lines) == 2 and "and was detached; training goes on" in lines[1], lines
        assert "Traceback" not in done.stdout + done.stderr
    loss = jsonl_series(tmp_path / "runs" / "tiny", "iter", "loss")
    assert [i for i, _ in loss] == list(range(1, 401)), "metrics.jsonl has every iteration"


def _without_wandb_mode(tmp_path: Path, **values: str) -> dict[str, str]:
    """No WANDB_MODE, and a home with no W&B credentials in it."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY", "NETRC")}
    (tmp_path / "home").mkdir(exist_ok=True)
    return {**env, "HOME": str(tmp_path / "home"), **values}


def test_wandb_logged_in_but_unreachable_goes_offline_and_says_why(tmp_path: Path) -> None:
    """Credentials for a W&B server on 127.0.0.1 that is not there: online is tried, then offline."""
    env = _without_wandb_mode(tmp_path, WANDB_API_KEY="a" * 40, WANDB_BASE_URL=f"http://127.0.0.1:{free_port()}",
                              WANDB_INIT_TIMEOUT="5")
    done = _train(tmp_path, env=env, log_to=["wandb"])
    assert done.returncode == 0, done.stderr + done.stdout
    run_dir = tmp_path / "runs" / "tiny"
    lines = [line for line in done.stdout.splitlines() if "log_to" in line]
    assert len(lines) == 1 and lines[0].startswith("info: log_to wandb: offline (W&B could not be reached: "), lines
    assert wandb_history(run_dir, "train/loss") == jsonl_series(run_dir, "iter", "loss")
