"""Datasets from the user's side: tokenizers, data_path forms, the token cache, bad input, batches."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support import corpus

import tuigpt.engine.data as data
from tuigpt.engine.data import BatchSampler, TokenData, Tokenizer, load_dataset
from tuigpt.run.errors import UserError


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache dir of this test's own, for tests that inspect or damage the cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def char_data(shakespeare: Path) -> TokenData:
    return load_dataset("shakespeare_char", data_path=str(shakespeare))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- tokenizers -----------------------------------------------------------------------------------


def test_shakespeare_char_matches_nanogpt(char_data: TokenData, shakespeare: Path) -> None:
    text = shakespeare.read_text(encoding="utf-8")
    tok = char_data.tokenizer
    assert (tok.name, tok.vocab_size) == ("char", 65)
    # nanoGPT's prepare.py split: 1,003,854 train and 111,540 val characters
    assert (len(char_data.train), len(char_data.val)) == (1_003_854, 111_540)
    assert isinstance(char_data.train, np.memmap) and char_data.train.dtype == np.uint16
    assert tok.decode(char_data.train.tolist()) + tok.decode(char_data.val.tolist()) == text
    assert tok.encode("First Citizen") == char_data.train[:13].tolist()
    assert char_data.source_sha256 == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def test_char_encode_skips_unknown_characters(char_data: TokenData) -> None:
    tok = char_data.tokenizer
    assert tok.decode(tok.encode("O Romeo€ 🙂, Romeo!")) == "O Romeo , Romeo!"
    assert tok.encode("") == []
    assert tok.decode([0, 999, -1]) == "\n"  # ids outside the vocabulary are dropped too


def test_gpt2_tokenizer_offline_round_trip(shakespeare: Path, gpt2_bpe: Path) -> None:
    d = load_dataset("shakespeare", data_path=str(shakespeare))
    tok = d.tokenizer
    assert (tok.name, tok.vocab_size) == ("gpt2", 50257)
    assert d.train.dtype == np.uint16
    assert len(d.train) + len(d.val) == 338_025  # BPE: ~3.3 characters a token
    assert tok.decode(d.train.tolist()) + tok.decode(d.val.tolist()) == shakespeare.read_text(encoding="utf-8")
    text = "Hello <|endoftext|> wörld"  # special tokens in user text are plain text, not an error
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode([50257, 50303]) == ""  # padded-vocab ids a model may sample


def test_tokenizer_meta_round_trips_through_json(char_data: TokenData, gpt2_bpe: Path) -> None:
    gpt2 = Tokenizer.from_meta({"kind": "tiktoken", "name": "gpt2", "vocab_size": 50257})
    for tok in (char_data.tokenizer, gpt2):
        again = Tokenizer.from_meta(json.loads(json.dumps(tok.to_meta())))
        assert (again.name, again.vocab_size) == (tok.name, tok.vocab_size)
        assert again.encode("To be, or not to be") == tok.encode("To be, or not to be")


@pytest.mark.parametrize(
    "meta",
    [
        None,
        {},
        {"kind": "char"},
        {"kind": "char", "chars": "aab"},
        {"kind": "tiktoken", "name": "nope"},
        {"kind": "tiktoken", "name": "gpt2", "vocab_size": 65},
    ],
)
def test_tokenizer_from_bad_meta_is_user_error(meta: object) -> None:
    if isinstance(meta, dict) and meta.get("name") == "gpt2":
        corpus.gpt2_files()  # its vocabulary is checked against the loaded encoding: skips without the files
    with pytest.raises(UserError, match="tokenizer metadata"):
        Tokenizer.from_meta(meta)  # type: ignore[arg-type]


def test_tokenizer_option_overrides_dataset_default(tmp_path: Path, gpt2_bpe: Path) -> None:
    f = write(tmp_path / "a.txt", "hello world, hello tokens\n" * 50)
    assert load_dataset("text", data_path=str(f), tokenizer="gpt2").tokenizer.name == "gpt2"
    assert load_dataset("text", data_path=str(f), tokenizer="r50k_base").tokenizer.vocab_size == 50257
    assert load_dataset("shakespeare", data_path=str(f), tokenizer="char").tokenizer.vocab_size == 14


def test_tiktoken_offline_without_cache_says_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = write(tmp_path / "a.txt", "some text\n" * 20)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-tiktoken-cache"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # refuses at once instead of hanging
    monkeypatch.setenv("NO_PROXY", "")
    with pytest.raises(UserError, match="TIKTOKEN_CACHE_DIR") as err:
        load_dataset("text", data_path=str(f), tokenizer="p50k_base")  # never loaded in this process
    assert "p50k_base" in str(err.value)


# --- data_path forms ------------------------------------------------------------------------------


def test_data_path_directory_reads_txt_files_recursively_in_order(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write(root / "b.txt", "bbb")  # no trailing newline: one is added before the next file
    write(root / "a.txt", "aaa\n")
    write(root / "sub" / "c.txt", "ccc")
    write(root / "notes.md", "zzz")  # not .txt: ignored
    d = load_dataset("text", data_path=str(root))
    text = d.tokenizer.decode(d.train.tolist() + d.val.tolist())
    assert text == "aaa\nbbb\nccc"
    assert "3 files" in d.source


def test_data_path_glob_uses_sorted_matches(tmp_path: Path) -> None:
    write(tmp_path / "part2.txt", "two\n")
    write(tmp_path / "part1.txt", "one\n")
    write(tmp_path / "other.txt", "never\n")
    d = load_dataset("text", data_path=str(tmp_path / "part*.txt"))
    assert d.tokenizer.decode(d.train.tolist() + d.val.tolist()) == "one\ntwo\n"


def test_data_path_replaces_the_shakespeare_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "SHAKESPEARE_URL", "http://127.0.0.1:9/never-fetched")
    f = write(tmp_path / "mine.txt", "my own words\n" * 10)
    d = load_dataset("shakespeare_char", data_path=str(f))
    assert d.tokenizer.decode(d.train[:12].tolist()) == "my own words"
    assert d.source == str(f)


# --- the token cache ------------------------------------------------------------------------------


def cache_folder(cache: Path) -> Path:
    (folder,) = (cache / "tokens").iterdir()
    return folder


def test_cache_is_built_once_then_reused(private_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(tmp_path / "a.txt", "abcdefgh\n" * 100)
    first = load_dataset("text", data_path=str(f))
    folder = cache_folder(private_cache)
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "train.bin", "val.bin"]
    assert folder.name.startswith("text-char-")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["tokens"] == {"train": 810, "val": 90}

    def no_rebuild(*args: object) -> None:
        raise AssertionError("cache rebuilt although it was valid")

    monkeypatch.setattr(data, "build_cache", no_rebuild)
    second = load_dataset("text", data_path=str(f))
    assert np.array_equal(first.train, second.train) and np.array_equal(first.val, second.val)


def test_cache_rebuilt_when_source_text_changes(private_cache: Path, tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", "abc\n" * 100)
    load_dataset("text", data_path=str(f))
    write(f, "xyz!\n" * 100)
    d = load_dataset("text", data_path=str(f))
    assert d.tokenizer.decode(d.train[:5].tolist()) == "xyz!\n"
    assert len(list((private_cache / "tokens").iterdir())) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "train.bin").write_bytes(b"\0\0"),  # truncated
        lambda folder: (folder / "meta.json").write_text("{not json"),
        lambda folder: (folder / "meta.json").unlink(),  # a build interrupted before meta.json
        lambda folder: (folder / "val.bin").unlink(),
    ],
)
def test_damaged_cache_is_rebuilt(private_cache: Path, tmp_path: Path, damage) -> None:
    f = write(tmp_path / "a.txt", "the quick brown fox\n" * 50)
    good = load_dataset("text", data_path=str(f))
    train, val = np.array(good.train), np.array(good.val)  # copies: the damage hits the mapped files
    del good
    damage(cache_folder(private_cache))
    again = load_dataset("text", data_path=str(f))
    assert np.array_equal(again.train, train) and np.array_equal(again.val, val)


def test_large_vocab_is_stored_as_uint32(tmp_path: Path) -> None:
    text = "".join(chr(0x20000 + i) for i in range(70_000))  # 70,000 distinct characters
    d = load_dataset("text", data_path=str(write(tmp_path / "big.txt", text)))
    assert d.tokenizer.vocab_size == 70_000 and d.train.dtype == np.uint32
    assert d.tokenizer.decode(d.val[-3:].tolist()) == text[-3:]


# --- bad input: one UserError naming what is wrong ------------------------------------------------


def test_unknown_dataset_suggests_closest() -> None:
    with pytest.raises(UserError, match=r"'shakespear_char'.*did you mean 'shakespeare_char'.*text"):
        load_dataset("shakespear_char")


def test_unknown_tokenizer_lists_valid_ones() -> None:
    with pytest.raises(UserError, match=r"'gtp2'.*did you mean 'gpt2'.*char.*cl100k_base"):
        load_dataset("shakespeare", tokenizer="gtp2")


def test_text_dataset_needs_data_path() -> None:
    with pytest.raises(UserError, match="data_path"):
        load_dataset("text")


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(UserError, match="does not exist") as err:
        load_dataset("text", data_path=str(missing))
    assert str(missing) in str(err.value)


def test_empty_glob(tmp_path: Path) -> None:
    pattern = str(tmp_path / "*.txt")
    with pytest.raises(UserError, match="matches no files") as err:
        load_dataset("text", data_path=pattern)
    assert pattern in str(err.value)


def test_directory_without_txt(tmp_path: Path) -> None:
    write(tmp_path / "readme.md", "not a txt")
    with pytest.raises(UserError, match="no .txt files") as err:
        load_dataset("text", data_path=str(tmp_path))
    assert str(tmp_path) in str(err.value)


def test_empty_text(tmp_path: Path) -> None:
    f = write(tmp_path / "empty.txt", "")
    with pytest.raises(UserError, match="holds no text") as err:
        load_dataset("text", data_path=str(f))
    assert str(f) in str(err.value)


def test_invalid_utf8_names_file_and_offset(tmp_path: Path) -> None:
    f = tmp_path / "latin1.txt"
    f.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.txt is not UTF-8 text \(bad byte at offset 3\)"):
        load_dataset("text", data_path=str(f))


def test_binary_file_is_rejected(tmp_path: Path) -> None:
    png = tmp_path / "image.txt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(UserError, match="image.txt is not UTF-8"):
        load_dataset("text", data_path=str(png))
    zeros = tmp_path / "zeros.txt"
    zeros.write_bytes(b"abc" + b"\0" * 64)  # valid UTF-8, but not text
    with pytest.raises(UserError, match=r"zeros.txt looks binary \(NUL byte at offset 3\)"):
        load_dataset("text", data_path=str(zeros))


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuigpt.run import files

    f = write(tmp_path / "secret.txt", "hidden\n")
    real_open = files.open_regular

    def open_regular(path: Path):  # chmod 000 does not stop root, so deny it here
        if Path(path) == f:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(files, "open_regular", open_regular)
    with pytest.raises(UserError, match="Permission denied") as err:
        load_dataset("text", data_path=str(f))
    assert str(f) in str(err.value)


def test_check_block_size(tmp_path: Path) -> None:
    d = load_dataset("text", data_path=str(write(tmp_path / "small.txt", "0123456789" * 10)))
    assert (len(d.train), len(d.val)) == (90, 10)
    d.check_block_size(8)  # val has 10 > 8 + 1
    with pytest.raises(UserError, match=r"block_size=9 .*train has 90 tokens, val has 10.*block_size <= 8"):
        d.check_block_size(9)
    with pytest.raises(UserError, match="block_size=256"):
        BatchSampler(d, block_size=256, batch_size=4)


def test_check_block_size_with_almost_no_text(tmp_path: Path) -> None:
    d = load_dataset("text", data_path=str(write(tmp_path / "tiny.txt", "hi")))
    with pytest.raises(UserError, match="train has 1 tokens, val has 1,.*more text"):
        d.check_block_size(1)


# --- batches --------------------------------------------------------------------------------------


def test_batches_are_windows_with_targets_shifted_by_one(tmp_path: Path) -> None:
    # every character distinct and in code-point order, so token id == position in the text
    text = "".join(chr(0x100 + i) for i in range(3000))
    d = load_dataset("text", data_path=str(write(tmp_path / "ramp.txt", text)))
    sampler = BatchSampler(d, block_size=16, batch_size=32)
    for split, lo, hi in (("train", 0, 2700), ("val", 2700, 3000)):
        x, y = sampler.get_batch(split)
        assert x.shape == y.shape == (32, 16) and x.dtype == y.dtype == torch.int64
        assert x.is_contiguous() and y.is_contiguous()
        starts = x[:, :1]
        assert torch.equal(x, starts + torch.arange(16)), "rows are contiguous windows"
        assert torch.equal(y, x + 1), "targets are the next token"
        assert lo <= int(x.min()) and int(y.max()) < hi, f"{split} batch stays inside its split"
        assert len(set(starts.flatten().tolist())) > 1


def test_same_seed_same_batches_other_seed_other_batches(char_data: TokenData) -> None:
    a, b, c = (BatchSampler(char_data, 8, 4, seed=s) for s in (1, 1, 2))
    batches_a = [a.get_batch("train")[0] for _ in range(3)]
    assert all(torch.equal(p, b.get_batch("train")[0]) for p in batches_a)
    assert not torch.equal(batches_a[0], c.get_batch("train")[0])


def test_state_dict_resumes_the_exact_sequence(char_data: TokenData) -> None:
    sampler = BatchSampler(char_data, 8, 4, seed=7)
    for _ in range(5):
        sampler.get_batch("train")
    sampler.get_batch("val")
    buf = io.BytesIO()
    torch.save(sampler.state_dict(), buf)
    expected = [sampler.get_batch(s) for s in ("train", "val", "train")]

    resumed = BatchSampler(char_data, 8, 4, seed=7)
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    for (x, y), split in zip(expected, ("train", "val", "train")):
        rx, ry = resumed.get_batch(split)
        assert torch.equal(rx, x) and torch.equal(ry, y)


def test_val_batches_do_not_shift_train_batches(char_data: TokenData) -> None:
    plain, evaluating = BatchSampler(char_data, 8, 4), BatchSampler(char_data, 8, 4)
    evaluating.get_batch("val")
    evaluating.get_batch("train", generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain.get_batch("train")[0], evaluating.get_batch("train")[0])


def test_bad_split_and_bad_state(char_data: TokenData) -> None:
    sampler = BatchSampler(char_data, 8, 4)
    with pytest.raises(ValueError, match="'test'"):
        sampler.get_batch("test")
    before = sampler.state_dict()
    with pytest.raises(UserError, match="sampler state"):
        sampler.load_state_dict({"train_generator": torch.zeros(3, dtype=torch.uint8)})
    with pytest.raises(UserError, match="sampler state"):
        sampler.load_state_dict({"train_generator": before["train_generator"]})  # val state missing
    assert torch.equal(sampler.state_dict()["train_generator"], before["train_generator"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batches_land_on_the_gpu(char_data: TokenData) -> None:
    cpu_x, cpu_y = BatchSampler(char_data, 8, 4, seed=3).get_batch("train")
    x, y = BatchSampler(char_data, 8, 4, device="cuda", seed=3).get_batch("train")
    assert x.is_cuda and y.is_cuda
    assert torch.equal(x.cpu(), cpu_x) and torch.equal(y.cpu(), cpu_y)


def test_a_prefetched_batch_is_the_next_one_and_a_checkpoint_meanwhile_resumes_with_it(char_data: TokenData) -> None:
    plain = BatchSampler(char_data, block_size=16, batch_size=4, seed=7)
    ahead = BatchSampler(char_data, block_size=16, batch_size=4, seed=7)
    expected = [plain.get_batch("train") for _ in range(3)]
    first = ahead.get_batch("train")
    ahead.prefetch()
    state = ahead.state_dict()  # taken between the prefetch and the step that uses the batch
    second = ahead.get_batch("train")
    assert torch.equal(first[0], expected[0][0])
    assert torch.equal(second[0], expected[1][0]) and torch.equal(second[1], expected[1][1])
    resumed = BatchSampler(char_data, block_size=16, batch_size=4, seed=0)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.get_batch("train")[0], expected[1][0])  # the prefetched batch is not skipped
    ahead.prefetch()
    ahead.load_state_dict(state)  # a rewind drops the batch drawn ahead
    assert torch.equal(ahead.get_batch("train")[0], expected[1][0])
    assert torch.equal(ahead.get_batch("val")[0], plain.get_batch("val")[0])  # val batches are not drawn ahead
