"""Checkpoints: atomic writes, round trip, and refusal of bad or malicious files."""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from pathlib import Path

import pytest
import torch

from tuigpt.engine.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from tuigpt.run.errors import UserError


def minimal_state(**extra) -> dict:
    state = {"format": FORMAT_VERSION, "model": {"w": torch.arange(6.0)}, "model_args": {}, "config": {},
             "iter_num": 7, "tokenizer": {"name": "char"}}
    state.update(extra)
    return state


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "last.pt"
    save_checkpoint(minimal_state(best_val_loss=1.5), path)
    loaded = load_checkpoint(path)
    assert loaded["iter_num"] == 7 and loaded["best_val_loss"] == 1.5
    assert torch.equal(loaded["model"]["w"], torch.arange(6.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temp file left


def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(minimal_state(), path)

    def disk_full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(minimal_state(iter_num=8), path)
    monkeypatch.undo()
    assert load_checkpoint(path)["iter_num"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch " + str(Path.cwd() / "pwned-by-checkpoint"),))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT_VERSION, "payload": Exploit()}, path)
    with pytest.raises(UserError, match="not a safe tuigpt checkpoint.*refused"):
        load_checkpoint(path)
    assert not (Path.cwd() / "pwned-by-checkpoint").exists()


def test_plain_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(UserError):
        load_checkpoint(path)
    assert not (Path.cwd() / "pwned-by-checkpoint").exists()


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(minimal_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupted"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"# tuigpt\n\nTrain a small GPT...\n", random.Random(7).randbytes(2048),
                                     pickle.dumps({"format": 1})])
def test_a_file_torch_did_not_write_is_not_a_checkpoint(tmp_path: Path, content: bytes) -> None:
    """`tuigpt sample README.md` says what the file is not, not that it is unsafe or damaged."""
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=re.escape(str(path)) + r" is (empty: )?not a checkpoint") as info:
        load_checkpoint(path)
    assert "safe" not in str(info.value) and "corrupted" not in str(info.value)


def test_a_zip_that_torch_did_not_write_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(UserError, match="not a checkpoint"):
        load_checkpoint(path)


def test_a_tensor_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(UserError, match="is not a tuigpt checkpoint"):
        load_checkpoint(path)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    with pytest.raises(UserError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_the_checkpoint_timer_asks_after_its_minutes_without_any_last_pt() -> None:
    from tuigpt.engine.checkpointing import CheckpointTimer
    from tuigpt.run.commands import CheckpointNow
    from tuigpt.run.events import CheckpointWritten, IterationStats

    now = [0.0]
    sent: list[object] = []
    timer = CheckpointTimer(lambda c: sent.append(c), minutes=10, clock=lambda: now[0])
    step = IterationStats(iter=1, loss=3.0, lr=1e-3, ms_per_iter=10.0, tokens_per_sec=1.0, mfu=None, tokens_seen=1,
                          train_seconds=1.0)
    now[0] = 599.0
    timer(step)
    assert sent == []
    now[0] = 600.0
    timer(step)
    timer(step)  # asked once, until a last.pt is written
    assert sent == [CheckpointNow(reason="timer")]
    timer(CheckpointWritten(iter=5, path="runs/x/best.pt", reason="best", seconds=0.1))  # not last.pt: no reset
    timer(CheckpointWritten(iter=5, path="runs/x/last.pt", reason="eval", seconds=0.1))  # any last.pt resets it
    now[0] = 1100.0
    timer(step)
    assert len(sent) == 1
    now[0] = 1200.0
    timer(step)
    assert len(sent) == 2
    off = CheckpointTimer(lambda c: sent.append(c), minutes=0, clock=lambda: 1e9)
    off(step)
    assert len(sent) == 2
