"""Crafted files from elsewhere (nanoGPT's ckpt.pt and meta.pkl, Hugging Face folders): every field of the wrong type
or range, every file that is not a regular file of its folder, is one UserError naming it, found before a model is
built, and never a hang, a traceback or a file passed over as if it were absent (issue 26, items 4, 5, 5b)."""

from __future__ import annotations

import json
import math
import os
import pickle
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from support.foreign import random_gpt, write_hf_snapshot, write_meta_pkl, write_nanogpt_ckpt
from tuigpt.engine.data.nanogpt import SHAKESPEARE_CHARS, read_meta
from tuigpt.engine.sources import open_source
from tuigpt.run.errors import UserError

ARGS = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, bias=True, vocab_size=65, dropout=0.0)


@pytest.fixture(scope="module")
def weights() -> dict:
    return random_gpt(65, 32, 2, 32, bias=True, seed=1)


def nanogpt(folder: Path, weights: dict, change: Callable[[dict], Any] | None = None) -> Path:
    path = folder / "ckpt.pt"
    write_nanogpt_ckpt(path, weights, dict(ARGS), iter_num=10, best_val_loss=2.0, dataset="shakespeare_char")
    if change is not None:
        state = torch.load(path, weights_only=True)
        change(state)
        torch.save(state, path)
    return path


def refused(spec: Path | str, message: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(UserError, match=message):
        open_source(str(spec))
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("change, message", [
    (lambda s: s.__setitem__("iter_num", math.nan), r"iter_num must be an integer .* not float nan"),
    (lambda s: s.__setitem__("iter_num", math.inf), r"iter_num must be an integer .* not float inf"),
    (lambda s: s.__setitem__("iter_num", None), "iter_num must be an integer"),
    (lambda s: s.__setitem__("iter_num", [3]), "iter_num must be an integer .* not a list"),
    (lambda s: s.__setitem__("iter_num", "5"), "iter_num must be an integer .* not str '5'"),
    (lambda s: s["model_args"].__setitem__("block_size", math.inf), "model_args.block_size must be an integer"),
    (lambda s: s["model_args"].__setitem__("vocab_size", math.inf), "model_args.vocab_size must be an integer"),
    (lambda s: s["model_args"].__setitem__("vocab_size", 10**18), "model_args.vocab_size must be an integer"),
    (lambda s: s["model_args"].__setitem__("n_layer", 10**9), "model_args.n_layer must be an integer from 1 to 1,000"),
    (lambda s: s["model_args"].__setitem__("bias", "yes"), "model_args.bias must be true or false"),
    (lambda s: s.__setitem__("model", [1, 2]), "model must map parameter names to tensors"),
    (lambda s: s.__setitem__("model", {1: torch.zeros(2)}), "model must map parameter names to tensors"),
    (lambda s: s.__setitem__("optimizer", {"state": {}, "param_groups": 5}), "optimizer must be an optimizer state"),
    (lambda s: s.__setitem__("optimizer", {"state": {}, "param_groups": [1, 2]}), r"optimizer.param_groups\[0\]"),
    (lambda s: s.__setitem__("optimizer", {"state": {}, "param_groups": [{"params": [[1]]}]}),
     r"optimizer.param_groups\[0\] must be a mapping with a list of parameter ids"),
    (lambda s: s.__setitem__("best_val_loss", "low"), "best_val_loss must be a number"),
    (lambda s: s.__setitem__("config", [1]), "config must be a mapping"),
    (lambda s: s.__setitem__("config", {1: 2}), "config must be a mapping"),
])
def test_a_crafted_nanogpt_field_is_named(tmp_path: Path, weights: dict, change: Callable, message: str) -> None:
    refused(nanogpt(tmp_path, weights, change), message)


def test_a_nanogpt_eval_loss_that_is_not_finite_reads_as_none(tmp_path: Path, weights: dict) -> None:
    source = open_source(str(nanogpt(tmp_path, weights, lambda s: s.__setitem__("best_val_loss",
                                                                                 torch.tensor(math.nan)))))
    assert source.val_loss is None and source.checkpoint["best_val_loss"] is None


def _bomb(path: Path) -> None:
    level: dict = {}
    for _ in range(3):  # 3,000 ** 3 references in a few KB: walking them naively never ends
        level = {j: level for j in range(3000)}
    path.write_bytes(pickle.dumps({"vocab_size": 3, "itos": level}))


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(pickle.dumps({"vocab_size": 10**18, "itos": {0: "a"}})), r"at most 16,777,216 ids"),
    (lambda p: p.write_bytes(pickle.dumps({"itos": {0: "a", "x": "b"}})), "itos must map every id"),
    (_bomb, "itos must map every id"),  # each shared dict is walked once: refused at once, for what it holds
    (lambda p: os.mkfifo(p), "meta.pkl .* is not a regular file"),
    (lambda p: p.mkdir(), "meta.pkl .* is a directory"),
    (lambda p: os.symlink("/dev/zero", p), "meta.pkl .* is not a regular file"),
    (lambda p: os.symlink(p.parent / "nothing", p), "meta.pkl .* does not exist"),
])
def test_a_hostile_meta_pkl_beside_a_checkpoint_is_refused_not_ignored(tmp_path: Path, weights: dict,
                                                                       make: Callable, message: str) -> None:
    path = nanogpt(tmp_path, weights)
    make(tmp_path / "meta.pkl")
    refused(path, message)


def test_a_good_meta_pkl_still_gives_the_vocabulary(tmp_path: Path) -> None:
    write_meta_pkl(tmp_path / "meta.pkl", SHAKESPEARE_CHARS)
    assert read_meta(tmp_path / "meta.pkl").chars == SHAKESPEARE_CHARS


# ---------------------------------------------------------------- Hugging Face folders


@pytest.fixture
def hf(tmp_path: Path, weights: dict) -> Path:
    folder = tmp_path / "m"
    write_hf_snapshot(folder, weights, n_head=2)
    (folder / "tuigpt.json").write_text(json.dumps({"tokenizer": {"kind": "char", "chars": SHAKESPEARE_CHARS}}))
    return folder


def _config(folder: Path, **change: Any) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(change)
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("change, message", [
    ({"activation_function": ["gelu"]}, r"activation_function \['gelu'\]"),
    ({"activation_function": {"a": 1}}, "activation_function"),
    ({"layer_norm_epsilon": "abc"}, "layer_norm_epsilon 'abc'"),
    ({"n_embd": 0}, "n_embd must be an integer from 1"),
    ({"n_embd": -32}, "n_embd must be an integer from 1"),
    ({"n_positions": 0}, "n_positions must be an integer from 1"),
    ({"n_embd": 1e300}, r"n_embd must be an integer .* not 1e\+300"),
    ({"n_layer": 10**9}, "n_layer must be an integer from 1 to 1,000"),
    ({"vocab_size": 10**12}, "vocab_size must be an integer from 1 to 16,777,216"),
    ({"n_head": True}, "n_head must be an integer"),
])
def test_a_crafted_hf_config_value_is_named_before_a_model_is_built(hf: Path, change: dict, message: str) -> None:
    _config(hf, **change)
    refused(hf, message)


def test_a_config_json_nested_100000_deep_is_refused(hf: Path) -> None:
    (hf / "config.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    refused(hf, "nested too deeply")


def test_a_3d_conv1d_weight_is_named_by_the_shape_check(hf: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(hf / "model.safetensors"))
    tensors["h.0.attn.c_attn.weight"] = torch.zeros(2, 32, 96)
    save_file(tensors, str(hf / "model.safetensors"))
    refused(hf, r"does not fit its model_args: weight transformer.h.0.attn.c_attn.weight \(2, 32, 96\)")


def test_a_tokenizer_that_does_not_fit_the_vocabulary_is_refused(hf: Path) -> None:
    (hf / "tuigpt.json").write_text(json.dumps({"tokenizer": {"kind": "char", "chars": "abc"}}))
    refused(hf, "tokenizer .* does not fit its model's vocabulary of 65")


def _sharded(folder: Path, shard: str) -> None:
    (folder / "model.safetensors").rename(folder / "real.safetensors")
    names = {k: shard for k in ("wte.weight", "wpe.weight")}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": names}))


def test_a_shard_that_is_a_fifo_is_refused_without_blocking(hf: Path) -> None:
    _sharded(hf, "shard.safetensors")
    os.mkfifo(hf / "shard.safetensors")
    refused(hf, "model file .*shard.safetensors is not a regular file")


def test_a_shard_linked_from_outside_the_folder_is_refused(hf: Path, tmp_path: Path) -> None:
    _sharded(hf, "shard.safetensors")
    os.replace(hf / "real.safetensors", tmp_path / "elsewhere.safetensors")
    os.symlink(tmp_path / "elsewhere.safetensors", hf / "shard.safetensors")
    refused(hf, "shard.safetensors leads outside")
    _sharded_name = "../elsewhere.safetensors"
    (hf / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"wte.weight": _sharded_name}}))
    refused(hf, "is not a file name of the folder")


def test_a_cache_snapshot_linking_into_its_blobs_still_loads(tmp_path: Path, weights: dict) -> None:
    repo = tmp_path / "models--gpt2"
    snapshot = repo / "snapshots" / "abc"
    write_hf_snapshot(snapshot, weights, n_head=2, vocab_size=65)
    (repo / "blobs").mkdir()
    for name in ("model.safetensors", "config.json"):  # the Hugging Face cache's own layout
        os.replace(snapshot / name, repo / "blobs" / name)
        os.symlink(Path("../../blobs") / name, snapshot / name)
    assert open_source(str(snapshot)).args.n_layer == 2
