"""Runs as data: `tuigpt runs --json/--csv` and `tuigpt export-metrics` give tables pandas reads as they are, with
the values metrics.jsonl holds, without knowing tuigpt's record types."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tuigpt.cli import main as cli
from tuigpt.run.metrics_log import read_metrics

from conftest import TINY
from support.corpus import shakespeare

pytest.importorskip("pyarrow")
# what a pandas before 3.1 needs to read a CSV's floats exactly; 3.1 reads them so and deprecates the argument
CSV_EXACT = {"float_precision": "round_trip"} if tuple(map(int, pd.__version__.split(".")[:2])) < (3, 1) else {}


@pytest.fixture
def run_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "out_dir": str(tmp_path / "runs"), "run_name": "r",
                                      "data_path": str(shakespeare()), "sample_every_eval": True,
                                      "telemetry_interval": 0.5}))
    assert cli.main([str(config), "--headless"]) == 0
    capsys.readouterr()
    return tmp_path / "runs" / "r"


def _export(run: Path, capsys: pytest.CaptureFixture, *args: str) -> str:
    assert cli.main(["export-metrics", str(run), *args]) == 0
    return capsys.readouterr().out


def test_every_format_reads_back_in_pandas_with_the_values_of_metrics_jsonl(run_dir: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    # each format read back with the call the export prints, as a user pastes it: exact values, no warning, on the
    # pandas installed (3.0.6 read a CSV float an ulp off by default; 3.1 deprecates the argument that fixed it)
    tables = []
    for fmt in ("csv", "parquet", "jsonl"):
        out = _export(run_dir, capsys, "--format", fmt)
        assert out.startswith(f"wrote {run_dir / f'metrics-scalars.{fmt}'}: ") and "in pandas: pd.read_" in out
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tables.append(eval(out.split("in pandas: ", 1)[1].strip(), {"pd": pd}))  # noqa: S307 - our own line
    records = read_metrics(run_dir / "metrics.jsonl")
    loss = [(r["iter"], r["loss"]) for r in records if r["type"] == "iter"]
    val = [(r["iter"], r["val_loss"]) for r in records if r["type"] == "eval"]
    rss = [r["data"]["process_rss_bytes"] for r in records if r["type"] == "telemetry" and r["kind"] == "cpu"]
    for df in tables:
        assert list(df.columns[:2]) == ["iter", "time"] and df["iter"].dtype == "int64"
        assert list(df.dropna(subset=["train/loss"])[["iter", "train/loss"]].itertuples(index=False, name=None)) == loss
        assert list(df.dropna(subset=["eval/val_loss"])[["iter", "eval/val_loss"]].itertuples(index=False,
                                                                                               name=None)) == val
        assert list(df["cpu/process_rss_bytes"].dropna()) == rss and rss
        assert {"health/grad_norm", "health/block_0/grad_norm", "speed/tokens_per_sec"} <= set(df.columns)
    pd.testing.assert_frame_equal(tables[0], tables[1], check_dtype=False)
    pd.testing.assert_frame_equal(tables[0], tables[2][tables[0].columns], check_dtype=False)


def test_the_text_table_holds_samples_and_events(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    _export(run_dir, capsys, "--format", "jsonl", "--table", "text")
    text = pd.read_json(run_dir / "metrics-text.jsonl", lines=True)
    assert list(text.columns) == ["iter", "time", "series", "text"]
    samples = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "sample"]
    got = text[text.series == "samples"]
    assert list(got.iter) == [s["iter"] for s in samples] and list(got.text) == [s["prompt"] + s["text"] for s in samples]
    assert any(t.startswith("run ended (done) at iter 10") for t in text[text.series == "events"].text)


def test_export_refuses_to_overwrite_and_writes_to_stdout_on_request(run_dir: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    _export(run_dir, capsys, "--format", "csv")
    assert cli.main(["export-metrics", str(run_dir), "--format", "csv"]) == 2
    assert "already exists: give another --out FILE" in capsys.readouterr().err
    out = _export(run_dir, capsys, "--format", "csv", "--out", "-")
    assert out.splitlines()[0].startswith("iter,time,") and len(pd.read_csv(io.StringIO(out))) > 10
    assert cli.main(["export-metrics", str(run_dir), "--format", "parquet", "--out", "-"]) == 2
    assert cli.main(["export-metrics", str(run_dir / "nothing"), "--format", "csv"]) == 2
    assert "does not exist: give a run folder" in capsys.readouterr().err


def test_an_iteration_trained_twice_is_a_row_each_time_in_file_order(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "rewound"
    run.mkdir()
    lines = [{"type": "start", "time": 1.0, "run_name": "rewound", "run_dir": str(run), "config_path": None,
              "config": {}, "n_params": 1, "device": "cpu", "dtype": "float32", "dtype_reason": "", "start_iter": 0,
              "max_iters": 9, "tokens_per_iter": 1, "flops_per_token": 1, "peak_flops": None, "peak_label": "",
              "eval_interval": 5, "resumed": False}]
    iters = [1, 2, 3, 4, 5, 4, 5, 6]  # a rewind from 5 back to 3
    lines += [{"type": "iter", "time": 2.0 + k, "iter": i, "loss": 10.0 - k, "lr": 1e-3, "ms_per_iter": 1.0,
               "tokens_per_sec": 1.0, "mfu": None, "tokens_seen": i, "train_seconds": 1.0}
              for k, i in enumerate(iters)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    df = pd.read_csv(io.StringIO(_export(run, capsys, "--format", "csv", "--out", "-")))
    assert list(df.iter) == iters and list(df["train/loss"]) == [10.0 - k for k in range(8)]


def test_runs_as_json_and_csv(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs_root = str(run_dir.parent)
    assert cli.main(["runs", "--out_dir", runs_root, "--json"]) == 0
    runs = pd.read_json(io.StringIO(capsys.readouterr().out), precise_float=True)
    assert cli.main(["runs", "--out_dir", runs_root, "--csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), **CSV_EXACT)
    records = read_metrics(run_dir / "metrics.jsonl")
    best = [r for r in records if r["type"] == "finish"][-1]["best_val_loss"]
    for df in (runs, table):
        row = df.iloc[0]
        assert len(df) == 1 and row["name"] == "r" and row["state"] == "done" and row["iteration"] == 10
        assert row["max_iters"] == 10 and row["best_val_loss"] == best and row["device"] == "cpu"
        assert row["path"] == str(run_dir.resolve()) and pd.Timestamp(row["updated"]).tzinfo is not None
        assert abs(pd.Timestamp(row["updated"]).timestamp() - row["updated_unix"]) < 1
    (tmp_path / "none").mkdir()
    assert cli.main(["runs", "--out_dir", str(tmp_path / "none"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli.main(["runs", "--out_dir", str(tmp_path / "none"), "--csv"]) == 0
    assert capsys.readouterr().out.startswith("name,path,state,iteration,")
    assert cli.main(["runs", "--json", "--csv"]) == 2
