"""Checkpoints: atomic save, safe load (weights_only), and the RNG state they carry.

A checkpoint is a dict of tensors and plain Python values only, so it loads with
``torch.load(weights_only=True)``: a file crafted to run code when unpickled is
refused instead of executed.
"""

from __future__ import annotations

import pickle
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuigpt.run.errors import UserError
from tuigpt.run.files import atomic_file
from tuigpt.run.fmt import clip
from tuigpt.run.user_files import open_regular, stat_regular

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "model", "model_args", "config", "iter_num", "tokenizer")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
_LEGACY_MAGIC = b"\x80\x02"  # the older pickle-based torch.save format
_EXAMPLE = "checkpoints/<run_name>/best.pt"


def save_checkpoint(state: dict[str, Any], path: Path, mode: int = 0o600) -> None:
    """Write ``state`` to ``path`` atomically: a crash at any moment leaves the previous file or the new one.

    A failed write (disk full, EIO) raises OSError: torch's writer turns the file's OSError into a RuntimeError
    ("unexpected pos"), so the OSError is caught on its way through and raised again instead.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, mode=mode) as f:
        recorder = _WriteRecorder(f)
        try:
            torch.save(state, recorder)
        except RuntimeError:
            if recorder.error is not None:
                raise recorder.error from None
            raise


class _WriteRecorder:
    """A file for torch.save that keeps the OSError a write raised."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self._f.flush()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a tuigpt checkpoint onto the CPU; every kind of bad file is a one-line UserError."""
    path = Path(path)
    shown = clip(str(path), 200)
    state = read_torch_file(path)
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise UserError(f"{shown} is not a tuigpt checkpoint (missing model/config/iteration entries)")
    if type(state["format"]) is not int or state["format"] != FORMAT_VERSION:
        raise UserError(f"checkpoint {shown} has format {clip(repr(state['format']), 40)}; this tuigpt reads format "
                        f"{FORMAT_VERSION}")
    return state


def read_torch_file(path: Path) -> Any:
    """``torch.load(weights_only=True)`` of any checkpoint file (tuigpt's or nanoGPT's) onto the CPU; every kind
    of bad file (missing, a directory, a FIFO or device, unsafe, not a checkpoint) is a one-line UserError."""
    shown = clip(str(path), 200)
    stat_regular(path, "checkpoint", "give a .pt file such as checkpoints/<run_name>/last.pt")  # no FIFO, no device
    _check_torch_file(path)
    try:
        f = open_regular(path)
    except OSError as exc:
        raise UserError(f"cannot read checkpoint {shown}: {exc.strerror or exc}") from None
    try:
        with f, warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore")
            state = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = (str(exc).strip().splitlines() or ["unreadable"])[0]
        if "weights only load failed" in str(exc).lower() or "unsupported global" in str(exc).lower():
            # a torch.save file holding more than tensors and plain values: pickled objects that run code
            raise UserError(f"checkpoint {shown} is not a safe tuigpt checkpoint: it contains objects that could "
                            f"run code when loaded, so it was refused") from None
        raise UserError(f"{shown} is not a tuigpt checkpoint ({clip(first, 120)}): give a .pt file a run wrote, "
                        f"e.g. {_EXAMPLE}") from None
    except Exception as exc:  # torch.load on arbitrary bytes fails in many ways (EOFError, KeyError, ...)
        first = (str(exc).strip().splitlines() or ["unreadable"])[0]
        raise UserError(f"checkpoint {shown} is truncated or corrupted ({first[:120]}): "
                        f"use another checkpoint (best.pt or last.pt) or retrain") from None
    return state


def _check_torch_file(path: Path) -> None:
    """A file torch.save did not write (text, an image, an empty file, another zip) is "not a checkpoint", said
    before torch.load can call it unsafe or corrupted."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_ZIP_MAGIC))
    except OSError as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if not head:
        raise UserError(f"{path} is empty: not a checkpoint (an interrupted copy?); give a .pt file a run wrote, e.g. "
                        f"{_EXAMPLE}")
    if head.startswith(_LEGACY_MAGIC):
        return
    if head != _ZIP_MAGIC:
        raise UserError(f"{path} is not a checkpoint (not a file written by torch.save): give a .pt file a run "
                        f"wrote, e.g. {_EXAMPLE}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return  # a torch archive cut short: torch.load names it truncated
    if not any(name.endswith("data.pkl") for name in names):
        raise UserError(f"{path} is not a checkpoint (a zip archive, but not one torch.save wrote): give a .pt file "
                        f"a run wrote, e.g. {_EXAMPLE}")


# ---------------------------------------------------------------- RNG state


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA generator states, as tensors and plain values."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
