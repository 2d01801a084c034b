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


def _never(*_args: object) -> tuple[str, str]:
    raise AssertionError("nothing may be timed here")


def test_gpu_dtype_auto_times_bf16_else_fp16_with_scaling(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda", 0)
    timed: list[str] = []

    def measure(low: str) -> tuple[str, str]:
        timed.append(low)
        return low, "auto: measured 2.10x float32's speed here"

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", cuda, measure).name == "bfloat16"
    # a GPU whose bf16 is only emulated (V100, T4) times fp16 against float32 instead
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _d=None: "Tesla T4")
    assert resolve_precision("auto", cuda, measure).name == "float16"
    assert timed == ["bfloat16", "float16"]
    with pytest.raises(UserError, match="Tesla T4 has no bf16"):
        resolve_precision("bfloat16", cuda, _never)


def test_cpu_refuses_float16() -> None:
    with pytest.raises(UserError, match="float16 is not supported on CPU"):
        resolve_precision("float16", torch.device("cpu"), _never)


def _cpu(monkeypatch: pytest.MonkeyPatch, flags: set[str]) -> None:
    from tuigpt.engine import device
    from tuigpt.telemetry import cpuinfo
    from tuigpt.telemetry.cpuinfo import CpuInfo

    info = CpuInfo("test CPU", "x86_64", "GenuineIntel", 4, 8, frozenset(flags), None, None)
    monkeypatch.setattr(device, "read_cpu_info", lambda: info)
    monkeypatch.setattr(cpuinfo, "read_cpu_info", lambda: info)


def test_cpu_auto_takes_what_the_trial_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """No width or token rule: the same CPU flags give bf16 on one machine and float32 on another."""
    cpu = torch.device("cpu")
    _cpu(monkeypatch, {"avx512f", "avx512_bf16"})
    faster = resolve_precision("auto", cpu, lambda low: (low, "auto: measured 1.42x float32's speed here"))
    assert faster.name == "bfloat16" and "1.42x" in faster.reason
    slower = resolve_precision("auto", cpu, lambda low: ("float32", f"auto: {low} measured 0.73x"))
    assert slower.name == "float32" and "0.73x" in slower.reason
    assert resolve_precision("bfloat16", cpu, _never).name == "bfloat16"  # asked for: honoured, nothing timed


def test_cpu_without_native_bf16_never_tries_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _cpu(monkeypatch, {"avx2", "fma"})
    p = resolve_precision("auto", torch.device("cpu"), _never)
    assert p.name == "float32" and "no native bf16" in p.reason
    slow = resolve_precision("bfloat16", torch.device("cpu"), _never)
    assert slow.name == "bfloat16" and "slow here" in slow.reason


def test_compile_auto_measures_where_a_compiler_is(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuigpt.engine import device
    from tuigpt.engine.device import resolve_compile

    measured = lambda: (True, "auto: measured 1.30x eager's speed here")  # noqa: E731
    assert resolve_compile("auto", torch.device("cuda", 0), measured) == measured()
    assert resolve_compile("auto", torch.device("mps"), measured)[0] is False
    assert resolve_compile(False, torch.device("cpu"), measured) == (False, "set in config")
    monkeypatch.setattr(device.shutil, "which", lambda _name: None)
    on, why = resolve_compile("auto", torch.device("cpu"), measured)
    assert not on and "no C++ compiler" in why
    with pytest.raises(UserError, match="needs a C\\+\\+ compiler"):
        resolve_compile(True, torch.device("cpu"), measured)
