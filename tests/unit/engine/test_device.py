"""Device and dtype resolution, including the CUDA branches (simulated: this machine has no GPU)."""

from __future__ import annotations

import pytest
import torch

from tuigpt.engine.device import resolve_device, resolve_precision
from tuigpt.run.errors import UserError


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


def _cpu(monkeypatch: pytest.MonkeyPatch, flags: set[str]) -> None:
    from tuigpt.engine import device
    from tuigpt.telemetry.cpuinfo import CpuInfo

    info = CpuInfo("test CPU", "x86_64", "GenuineIntel", 4, 8, frozenset(flags), None, None)
    monkeypatch.setattr(device, "read_cpu_info", lambda: info)


def test_cpu_auto_uses_bf16_only_where_it_pays_off(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    _cpu(monkeypatch, {"avx512f", "avx512_bf16", "amx_bf16"})
    big = resolve_precision("auto", cpu, n_embd=256, tokens_per_micro_batch=32 * 128)  # cpu_optimized
    assert big.name == "bfloat16" and "AMX_BF16" in big.reason
    narrow = resolve_precision("auto", cpu, n_embd=128, tokens_per_micro_batch=12 * 64)  # the tiny config
    assert narrow.name == "float32" and "n_embd 128 < 256" in narrow.reason
    few = resolve_precision("auto", cpu, n_embd=384, tokens_per_micro_batch=4 * 128)
    assert few.name == "float32" and "512 tokens per micro-batch" in few.reason
    assert resolve_precision("bfloat16", cpu, n_embd=128).name == "bfloat16"  # asked for: honoured


def test_cpu_auto_without_native_bf16_is_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    _cpu(monkeypatch, {"avx2", "fma"})
    p = resolve_precision("auto", torch.device("cpu"), n_embd=768, tokens_per_micro_batch=8192)
    assert p.name == "float32" and "no native bf16" in p.reason
    slow = resolve_precision("bfloat16", torch.device("cpu"))
    assert slow.name == "bfloat16" and "slow here" in slow.reason


def test_compile_auto_and_missing_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuigpt.engine import device
    from tuigpt.engine.device import resolve_compile

    assert resolve_compile("auto", torch.device("cuda", 0)) == (True, "auto: on for CUDA")
    assert resolve_compile("auto", torch.device("cpu"))[0] is False
    assert resolve_compile(False, torch.device("cpu")) == (False, "set in config")
    monkeypatch.setattr(device.shutil, "which", lambda _name: None)
    with pytest.raises(UserError, match="needs a C\\+\\+ compiler"):
        resolve_compile(True, torch.device("cpu"))
