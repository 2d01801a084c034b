"""dataset: hf with datasets made on the fly by the real `datasets` package: a saved dataset (data_path), a folder
of its files (hf_name), splits and the text column; tokenized once (documents joined as nanoGPT's openwebtext
prepare.py joins them) and read from the cache after; offline with nothing cached, one line naming what to fetch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import yaml

from tuigpt.cli import main as cli
from tuigpt.engine.data import HfSpec, load_dataset
from tuigpt.run.errors import UserError

from conftest import REPO, TINY

datasets = pytest.importorskip("datasets")  # the test extra installs it
DOCS = ["First Citizen:\nBefore we proceed any further, hear me speak.", "All:\nSpeak, speak.",
        "First Citizen:\nYou are all resolved rather to die than to famish?", "All:\nResolved. resolved."] * 50


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _saved(tmp_path: Path, docs: list[str] = DOCS, **columns: list) -> Path:
    path = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": docs, **columns}).save_to_disk(str(path))
    return path


def test_a_saved_dataset_is_its_documents_gpt2_tokens_each_ended_by_end_of_text(tmp_path: Path,
                                                                                  private_cache: Path) -> None:
    data = load_dataset("hf", str(_saved(tmp_path)), hf=HfSpec(None))
    enc = tiktoken.get_encoding("gpt2")
    expected = [i for doc in DOCS for i in (*enc.encode_ordinary(doc), enc.eot_token)]
    n_train = int(len(expected) * 0.9)
    assert data.tokenizer.name == "gpt2"
    assert data.train.tolist() == expected[:n_train] and data.val.tolist() == expected[n_train:]
    assert isinstance(data.train, np.memmap), "read from the token cache, memory-mapped"
    folder, = (private_cache / "tokens").iterdir()
    written = (folder / "train.bin").stat().st_mtime_ns
    again = load_dataset("hf", str(_saved(tmp_path)), hf=HfSpec(None))  # saved again: the same fingerprint
    assert again.source_sha256 == data.source_sha256 and (folder / "train.bin").stat().st_mtime_ns == written
    other = load_dataset("hf", str(_saved(tmp_path, DOCS[:-1])), hf=HfSpec(None))
    assert other.source_sha256 != data.source_sha256, "other rows, another cache"


def test_characters_put_a_newline_between_documents(tmp_path: Path, private_cache: Path) -> None:
    data = load_dataset("hf", str(_saved(tmp_path)), "char", hf=HfSpec(None))
    text = "".join(doc + "\n" for doc in DOCS)
    assert data.tokenizer.vocab_size == len(set(text))
    assert data.tokenizer.decode(data.train.tolist()) + data.tokenizer.decode(data.val.tolist()) == text


def test_a_folder_of_files_with_its_own_validation_split(tmp_path: Path, private_cache: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    for split, docs in (("train", DOCS), ("validation", DOCS[:8])):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps({"story": d}) + "\n" for d in docs))
    spec = HfSpec(str(folder), split="train", val_split="validation", text_field="story")
    data = load_dataset("hf", hf=spec)
    enc = tiktoken.get_encoding("gpt2")
    assert data.val.tolist() == [i for doc in DOCS[:8] for i in (*enc.encode_ordinary(doc), enc.eot_token)]
    assert len(data.train) == sum(len(enc.encode_ordinary(d)) + 1 for d in DOCS)
    assert "split train, val split validation" in data.source


def test_a_dataset_dict_saved_to_disk_gives_its_splits(tmp_path: Path, private_cache: Path) -> None:
    path = tmp_path / "dict"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": DOCS}),
                          "test": datasets.Dataset.from_dict({"text": DOCS[:4]})}).save_to_disk(str(path))
    data = load_dataset("hf", str(path), hf=HfSpec(None, val_split="test"))
    enc = tiktoken.get_encoding("gpt2")
    assert len(data.val) == sum(len(enc.encode_ordinary(d)) + 1 for d in DOCS[:4])
    with pytest.raises(UserError, match=r"has no split 'validation' \(it has train, test\): set hf_val_split"):
        load_dataset("hf", str(path), hf=HfSpec(None, val_split="validation"))


def test_bad_input_is_one_line_naming_the_fix(tmp_path: Path, private_cache: Path) -> None:
    saved = _saved(tmp_path, n=list(range(len(DOCS))))
    for spec, data_path, message in [
        (HfSpec(None, text_field="story"), saved, r"has no column 'story' \(its columns: text, n\): set hf_text_field"),
        (HfSpec(None, text_field="n"), saved, "column 'n' holds int64, not text: set hf_text_field to a text column"),
        (HfSpec(None, val_split="validation"), saved, "holds one split, not several: leave hf_val_split empty"),
        (HfSpec("some/dataset"), saved, "takes hf_name or data_path, not both"),
        (HfSpec(None), None, "needs hf_name .* or data_path"),
        (HfSpec(None), tmp_path, "is not a dataset saved with save_to_disk"),
    ]:
        with pytest.raises(UserError, match=message):
            load_dataset("hf", None if data_path is None else str(data_path), hf=spec)


def test_offline_with_nothing_cached_names_what_to_fetch(tmp_path: Path, private_cache: Path) -> None:
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"  # conftest: nothing is downloaded
    with pytest.raises(UserError) as err:
        load_dataset("hf", hf=HfSpec("roneneldan/TinyStories", subset="default"))
    line = str(err.value)
    assert "\n" not in line and "could not be loaded" in line
    assert "python -c \"import datasets; datasets.load_dataset('roneneldan/TinyStories', 'default')\"" in line


def test_without_the_datasets_package_it_is_one_line(tmp_path: Path, cli_env: dict) -> None:
    blocker = tmp_path / "blocked" / "datasets"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('datasets is not installed here')\n")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "dataset": "hf", "data_path": str(tmp_path),
                                      "out_dir": str(tmp_path / "runs")}))
    env = dict(cli_env, PYTHONPATH=f"{blocker.parent}{os.pathsep}{REPO}")
    done = subprocess.run([sys.executable, "-m", "tuigpt", str(config), "--headless"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: dataset: hf needs the datasets package: pip install 'tuigpt[hf]' (or pip install datasets)"]


def test_a_run_trains_from_a_datasets_made_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "dataset": "hf", "data_path": str(_saved(tmp_path)),
                                      "tokenizer": "char", "out_dir": str(tmp_path / "runs"), "run_name": "hf"}))
    assert cli.main([str(config), "--headless"]) == 0
    out = capsys.readouterr().out
    assert "eval iter 10" in out and (tmp_path / "runs" / "hf" / "last.pt").is_file()
