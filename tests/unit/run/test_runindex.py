"""The per-user run index: `tuigpt runs` and `tuigpt watch` find runs from any directory."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from tuigpt.run import runindex
from tuigpt.run.errors import UserError
from tuigpt.run.rundir import find_runs, resolve_run_dir
from tuigpt.run.runindex import index_path, indexed_runs, remember_run


@pytest.fixture(autouse=True)
def private_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # no ./checkpoints here: only the index can find the runs
    return tmp_path


def make_run(root: Path, name: str) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"type":"start","run_name":"%s"}\n' % name)
    return run


def test_a_started_run_is_found_from_any_directory_and_a_deleted_one_is_pruned(tmp_path: Path) -> None:
    a = make_run(tmp_path / "project-a" / "checkpoints", "alpha")
    b = make_run(tmp_path / "project-b" / "out", "beta")
    remember_run(a)
    remember_run(b)
    assert sorted(indexed_runs()) == sorted([a, b])
    assert set(find_runs(None)) == {a, b} and find_runs(tmp_path / "project-a" / "checkpoints") == [a]
    shutil.rmtree(a)
    assert indexed_runs() == [b]
    assert list(json.loads(index_path().read_text())["runs"]) == [str(b)]  # gone from the file too


def test_watch_finds_a_run_by_name_through_the_index(tmp_path: Path) -> None:
    run = make_run(tmp_path / "elsewhere", "shakespeare_char")
    remember_run(run)
    assert resolve_run_dir("shakespeare_char") == run
    assert resolve_run_dir(None) == run  # the most recently updated of the user's runs
    twin = make_run(tmp_path / "other", "shakespeare_char")
    remember_run(twin)
    with pytest.raises(UserError, match="2 runs are named shakespeare_char: .*give the directory"):
        resolve_run_dir("shakespeare_char")
    with pytest.raises(UserError, match=r"no run of that name is under checkpoints/ or in .*runs\.json"):
        resolve_run_dir("nothing-like-it")


def test_out_dir_still_limits_the_search(tmp_path: Path) -> None:
    remember_run(make_run(tmp_path / "elsewhere", "far"))
    near = make_run(tmp_path / "mine", "near")
    assert resolve_run_dir(None, tmp_path / "mine") == near
    assert resolve_run_dir("near", tmp_path / "mine") == near
    with pytest.raises(UserError, match="no runs under"):
        resolve_run_dir(None, tmp_path / "empty")


def test_runs_starting_at_once_all_stay_in_the_index(tmp_path: Path) -> None:
    runs = [make_run(tmp_path / "many", f"r{i}") for i in range(12)]
    threads = [threading.Thread(target=remember_run, args=(run,)) for run in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(indexed_runs()) == sorted(runs)


def test_the_index_keeps_the_newest_runs_and_survives_garbage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runindex, "MAX_RUNS", 3)
    runs = [make_run(tmp_path / "many", f"r{i}") for i in range(5)]
    for i, run in enumerate(runs):
        remember_run(run, now=1000.0 + i)
    assert sorted(indexed_runs()) == sorted(runs[2:])
    index_path().write_text("{not json")
    assert indexed_runs() == []
    remember_run(runs[0])
    assert indexed_runs() == [runs[0]]
