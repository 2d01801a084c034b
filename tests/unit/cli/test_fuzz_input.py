"""Property-based bad input: every broken config file, override or data file ends in exit 2 with one line.

Each generated case is a valid tiny config plus one or more faults, so nothing may train; the
CLI runs in-process and must return 2 with a single 'error: ...' line naming the problem.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuigpt.cli import main as cli
from tuigpt.run.config import TrainConfig

from conftest import TINY
from support import corpus

POSITIVE_INT = ["eval_interval", "log_interval", "eval_iters", "gradient_accumulation_steps", "batch_size",
                "block_size", "n_layer", "n_head", "n_embd", "sample_max_new_tokens"]
FLOATS = ["dropout", "learning_rate", "weight_decay", "beta1", "beta2", "grad_clip", "sample_temperature"]
FIELDS = [f for f in TrainConfig.__dataclass_fields__]

text = st.text(min_size=1, max_size=12)
unknown_keys = st.from_regex(r"[a-z_]{1,20}", fullmatch=True).filter(lambda k: k not in FIELDS)


@st.composite
def fault(draw) -> tuple[str, object, str]:
    """(key, value, what the error line must mention)"""
    kind = draw(st.sampled_from(["unknown", "int_type", "float_bad", "neg", "bool_type", "str_type", "unicode_key",
                                 "huge"]))
    if kind == "unknown":
        key = draw(unknown_keys)
        return key, draw(st.integers()), key
    if kind == "int_type":
        key = draw(st.sampled_from(POSITIVE_INT))
        value = draw(st.one_of(text.filter(lambda s: not s.strip().lstrip("+-").isdigit()),
                               st.floats(allow_nan=False).filter(lambda f: f != int(f) if math.isfinite(f) else True),
                               st.lists(st.integers(), max_size=2)))
        return key, value, key
    if kind == "float_bad":
        key = draw(st.sampled_from(FLOATS))
        return key, draw(st.sampled_from([math.nan, math.inf, -math.inf])), key
    if kind == "neg":
        key = draw(st.sampled_from(POSITIVE_INT))
        return key, draw(st.integers(max_value=0)), key
    if kind == "bool_type":
        key = draw(st.sampled_from(["bias", "compile", "decay_lr", "eval_only", "always_save_checkpoint"]))
        return key, draw(st.one_of(st.integers(min_value=2), st.floats(allow_nan=False), st.lists(st.booleans()))), key
    if kind == "str_type":
        key = draw(st.sampled_from(["dataset", "tokenizer", "device", "dtype", "out_dir"]))
        return key, draw(st.one_of(st.integers(), st.lists(text, max_size=2), st.dictionaries(text, text, max_size=1))), key
    if kind == "unicode_key":
        key = draw(st.text(alphabet="äöü日本語🙂ß", min_size=1, max_size=6))
        return key, 1, key
    key = draw(st.sampled_from(["block_size", "n_layer", "batch_size"]))  # absurd sizes: data or memory refuses
    return key, draw(st.integers(min_value=10**7, max_value=10**12)), key


def base_config(out_dir: str) -> dict:
    return dict(TINY, out_dir=out_dir, data_path=str(corpus.shakespeare()), max_iters=1)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check(code: int, out: str, err: str, needle: str | None = None) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, err, out[-300:])
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    assert "tuigpt training" not in out  # refused before anything started
    if needle is not None:
        assert needle in lines[0] or repr(needle)[1:-1] in lines[0], (needle, lines[0])


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(faults=st.lists(fault(), min_size=1, max_size=3, unique_by=lambda f: f[0]))
def test_bad_config_files(faults, capsys) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        values = base_config(tmp)
        values.update({k: v for k, v, _ in faults})
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(values, allow_unicode=True))
        code, out, err = run_cli([str(path), "--headless"], capsys)
        check(code, out, err)
        assert any(needle in err or repr(needle)[1:-1] in err for _, _, needle in faults), err
        assert not (Path(tmp) / "tiny").exists()


@FUZZ
@given(key=st.one_of(unknown_keys, st.sampled_from(POSITIVE_INT + FLOATS)),
       value=st.one_of(text, st.sampled_from(["nan", "-1", "0", "inf", "1e999", "", "[1]", "{}", "ü", "0x10"])))
def test_bad_overrides(key, value, capsys) -> None:
    try:
        TrainConfig(**{**TINY, key: float(value) if key in FLOATS else int(value)})
        return  # the value is a valid number for this key: not a fault
    except Exception:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(base_config(tmp)))
        code, out, err = run_cli([str(path), "--headless", f"--{key}={value}"], capsys)
        check(code, out, err, key)


@FUZZ
@given(content=st.one_of(st.binary(min_size=1, max_size=300), st.text(max_size=80)))
def test_arbitrary_config_file_content(content, capsys) -> None:
    """Random bytes or text as a config file: either a clean exit 2, or (if it parses to a valid config) refused data."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        # a file that happens to be a valid (empty) config must still not train here: no data is reachable
        os.environ["TUIGPT_SHAKESPEARE_URL"] = "http://127.0.0.1:9/unreachable"
        os.environ["TUIGPT_CACHE_DIR"] = tmp
        try:
            code, out, err = run_cli([str(path), "--headless", f"--out_dir={tmp}"], capsys)
        finally:
            del os.environ["TUIGPT_SHAKESPEARE_URL"]
        check(code, out, err)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(min_size=1, max_size=200).filter(lambda b: b"\0" in b or not _utf8(b)),
                      st.text(min_size=0, max_size=60)))
def test_bad_data_files(data, capsys) -> None:
    """Binary, empty, or too-short-for-block_size text: exit 2 naming the file or block_size."""
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "data.txt"
        data_file.write_bytes(data if isinstance(data, bytes) else data.encode())
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(dict(base_config(tmp), data_path=str(data_file), dataset="text")))
        code, out, err = run_cli([str(path), "--headless"], capsys)
        check(code, out, err)
        assert str(data_file) in err or "block_size" in err, err


def test_data_path_that_is_a_directory_or_unreadable(tmp_path: Path, capsys, monkeypatch) -> None:
    values = dict(base_config(str(tmp_path)), data_path=str(tmp_path))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(values))
    check(*run_cli([str(cfg), "--headless"], capsys), str(tmp_path))
    check(*run_cli([str(tmp_path), "--headless"], capsys), "is a directory")


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
