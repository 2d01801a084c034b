"""Device and dtype resolution, including the CUDA branches (simulated: this machine has no GPU)."""

from __future__ import annotations

import pytest
import torch

from tuigpt.device import resolve_device, resolve_precision
from tuigpt.errors import UserError


def test_cuda_devices_are_always_indexed(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cuda.set_device (called on the training thread) refuses a bare 'cuda'."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UserError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


def test_cpu_fallback_and_missing_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_gpu_dtype_auto_prefers_bf16_else_fp16_with_scaling(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", cuda).name == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _d=None: "Tesla T4")
    auto = resolve_precision("auto", cuda)
    assert auto.name == "float16" and "gradient scaling" in auto.reason
    with pytest.raises(UserError, match="Tesla T4 has no bf16"):
        resolve_precision("bfloat16", cuda)


def test_cpu_refuses_float16() -> None:
    with pytest.raises(UserError, match="float16 is not supported on CPU"):
        resolve_precision("float16", torch.device("cpu"))
