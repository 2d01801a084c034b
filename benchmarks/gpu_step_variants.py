"""GPT-2 124M training steps in a plain loop (tuigpt's model, no trainer), to try one-off GPU variants quickly.

docs/PERFORMANCE.md quotes these for what did not pay on an H200 (torch 2.11): the SDPA attention backends, inductor's
coordinate-descent tuning, and for two GPUs the DDP and NCCL settings. Run from the repo root:

    python benchmarks/gpu_step_variants.py sdpa                  # fwd+bwd of causal attention per backend
    CUDA_VISIBLE_DEVICES=0 B=32 python benchmarks/gpu_step_variants.py step
    B=16 torchrun --standalone --nproc_per_node 2 benchmarks/gpu_step_variants.py step

Variants (environment): B micro-batch (32), A accumulation (1), ITERS (50), ATTN=default|cudnn (flash and
mem-efficient off), CDT=1 (coordinate-descent tuning), MODE (torch.compile's mode, e.g.
max-autotune-no-cudagraphs); with torchrun: BUCKET MB (100), OPT_DDP=0 (no DDP graph splitting),
ORDER=ddp_first (compile the DDP module), HOOK=bf16 (bf16-compressed all-reduce), any NCCL_* variable;
PROFILE=1 prints the GPU time of NCCL and the busy time of the other kernels per step. Prints the median ms/step after
15 warm-up steps (compile included in the first).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tuigpt.engine.model import GPT, ModelArgs  # noqa: E402

PEAK = 990e12  # H100/H200 SXM dense bf16


def random_batches(batch: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """A get_batch of ``batch`` random GPT-2 token windows of 1024, through pinned memory as nanoGPT's."""
    tokens = torch.randint(0, 50257, (200_000,))

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(tokens) - 1025, (batch,))
        x = torch.stack([tokens[i:i + 1024] for i in ix])
        y = torch.stack([tokens[i + 1:i + 1025] for i in ix])
        return x.pin_memory().cuda(non_blocking=True), y.pin_memory().cuda(non_blocking=True)

    return get_batch


def event_ms(fn, reps: int = 20) -> float:  # noqa: ANN001
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def attention_backends() -> None:
    print(torch.__version__, "cuDNN", torch.backends.cudnn.version(), torch.cuda.get_device_name())
    for batch in (8, 16, 32):
        q, k, v = (torch.randn(batch, 12, 1024, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))
        grad = torch.randn_like(q)
        row = []
        for name, backend in [("default", None), ("flash", SDPBackend.FLASH_ATTENTION),
                              ("cudnn", SDPBackend.CUDNN_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION)]:
            def f() -> None:
                F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(grad)
            try:
                if backend is None:
                    row.append(f"{name} {event_ms(f):.3f} ms")
                else:
                    with sdpa_kernel([backend]):
                        row.append(f"{name} {event_ms(f):.3f} ms")
            except RuntimeError as exc:
                row.append(f"{name} n/a ({str(exc)[:60]})")
        print(f"B={batch} x 12 heads x 1024 x 64, fwd+bwd: " + " | ".join(row), flush=True)


def steps() -> None:
    env = os.environ.get
    batch, accum, iters = int(env("B", "32")), int(env("A", "1")), int(env("ITERS", "50"))
    if env("CDT") == "1":
        import torch._inductor.config as inductor_config

        inductor_config.coordinate_descent_tuning = True
    if env("ATTN") == "cudnn":
        torch.backends.cuda.enable_flash_sdp(False)
        torch.backends.cuda.enable_mem_efficient_sdp(False)
    torch.backends.cuda.matmul.allow_tf32 = True
    ddp = "WORLD_SIZE" in os.environ
    rank = 0
    if ddp:
        import torch._dynamo as dynamo  # (a bare `import torch._dynamo` would make torch local to this function)
        import torch.distributed as dist

        rank = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(rank)
        dist.init_process_group("nccl")
        dynamo.config.optimize_ddp = env("OPT_DDP", "1") == "1"
    torch.manual_seed(0)
    model = GPT(ModelArgs(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768)).cuda()
    optimizer = model.make_optimizer(0.1, 6e-4, (0.9, 0.95), "cuda")
    run = torch.compile(model, mode=env("MODE") or None)
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        options = dict(device_ids=[rank], gradient_as_bucket_view=True, bucket_cap_mb=float(env("BUCKET", "100")))
        run = (torch.compile(DistributedDataParallel(model, **options)) if env("ORDER") == "ddp_first"
               else DistributedDataParallel(run, **options))
        if env("HOOK") == "bf16":
            from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

            wrapped = run._orig_mod if hasattr(run, "_orig_mod") else run
            wrapped.register_comm_hook(None, default_hooks.bf16_compress_hook)
    get_batch = random_batches(batch)

    prof = None
    if env("PROFILE") == "1":
        from torch.profiler import ProfilerActivity, profile, schedule

        prof = profile(activities=[ProfilerActivity.CUDA], schedule=schedule(wait=20, warmup=2, active=4))
        prof.start()
    times = []
    for _ in range(iters):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(accum):
            x, y = get_batch()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                _, loss = run(x, y)
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
        if prof is not None:
            prof.step()
    ms = statistics.median(times[15:])
    per_gpu_tokens = batch * accum * 1024
    if rank == 0:
        variant = " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ)
                           if k in ("B", "A", "ATTN", "CDT", "MODE", "BUCKET", "OPT_DDP", "ORDER", "HOOK")
                           or k.startswith("NCCL_"))
        print(f"{variant or 'default'}{' (2 GPUs)' if ddp else ''}: first step {times[0] / 1000:.1f} s, {ms:.2f} ms/step, "
              f"MFU {model.flops_per_token() * per_gpu_tokens / (ms / 1000) / PEAK * 100:.1f}% a GPU", flush=True)
    if prof is not None and rank == 0:
        prof.stop()
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        nccl = sum(e.device_time for e in kernels if "nccl" in e.name.lower()) / 4 / 1000
        spans = sorted((e.time_range.start, e.time_range.end) for e in kernels if "nccl" not in e.name.lower())
        busy, start, end = 0.0, None, None
        for a, b in spans:  # the union of the compute kernels' intervals
            if end is None or a > end:
                busy += (end - start) if end is not None else 0.0
                start, end = a, b
            else:
                end = max(end, b)
        busy += (end - start) if end is not None else 0.0
        print(f"profile: NCCL kernels {nccl:.2f} ms a step; other kernels busy {busy / 4 / 1000:.2f} ms a step")


if __name__ == "__main__":
    attention_backends() if sys.argv[1:] == ["sdpa"] else steps()
