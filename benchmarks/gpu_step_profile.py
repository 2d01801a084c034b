"""Where tuigpt's GPU step spends what nanoGPT's loop does not: the GPU's own timeline of both, in one process.

Profiles N steps of tuigpt's trainer (the GPT-2 config, the trainer's own step) and N steps of a plain
nanoGPT-style loop on the same model shape (fused AdamW, clip, a loss read every 10 steps as nanoGPT logs), both
compiled, bf16 (with --cuda-graphs also the plain loop under torch.compile's reduce-overhead), and prints per step
the wall-clock time (the variants alternating) and, profiled: the span from the first kernel to the last, the time the GPU was busy (the
union of kernels and copies), the idle rest, and the kernels whose time differs most between the two.

    python benchmarks/gpu_step_profile.py --data ../shared/data/tinyshakespeare.txt [--batch 32] [--accum 1]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gpu_step_variants import random_batches  # noqa: E402

from tuigpt.engine.model import GPT, ModelArgs  # noqa: E402


def timeline(run_steps, steps: int) -> tuple[float, float, dict[str, float]]:  # noqa: ANN001
    """(span ms, busy ms, kernel ms by name), each per step, of ``run_steps(steps)`` on the GPU."""
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run_steps(steps)
        torch.cuda.synchronize()
    spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                   if e.device_type == DeviceType.CUDA)
    by_name: dict[str, float] = collections.defaultdict(float)
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:
            by_name[e.name[:90]] += (e.time_range.end - e.time_range.start) / 1000 / steps
    busy, end = 0.0, None
    for s, e in spans:
        if end is None or s > end:
            busy += e - s
            end = e
        elif e > end:
            busy += e - end
            end = e
    return (spans[-1][1] - spans[0][0]) / 1000 / steps, busy / 1000 / steps, by_name


def tuigpt_steps(data: str, batch: int, accum: int):  # noqa: ANN201
    from tuigpt.engine.trainer import Trainer
    from tuigpt.run.configfile import load_config

    over = dict(batch_size=str(batch), gradient_accumulation_steps=str(accum), compile="true", dtype="bfloat16",
                data_path=data, out_dir=tempfile.mkdtemp(), run_name="p", eval_interval="1000000",
                max_iters="1000000", telemetry_interval="0")
    trainer = Trainer(load_config("configs/train_gpt2_shakespeare.yaml", over))

    def run(n: int) -> None:
        for k in range(n):
            trainer.train_step()

    return run


def plain_steps(batch: int, accum: int, mode: str | None = None):  # noqa: ANN201
    torch.manual_seed(0)
    model = GPT(ModelArgs(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768)).cuda()
    optimizer = model.make_optimizer(0.1, 6e-4, (0.9, 0.95), "cuda")
    compiled = torch.compile(model, mode=mode)
    get_batch = random_batches(batch)

    count = [0]

    def run(n: int) -> None:
        x, y = get_batch()
        for _ in range(n):
            for _ in range(accum):
                if mode == "reduce-overhead":
                    torch.compiler.cudagraph_mark_step_begin()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    _, loss = compiled(x, y)
                x, y = get_batch()
                (loss / accum).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            count[0] += 1
            if count[0] % 10 == 0:
                loss.item()

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("DATA", "../shared/data/tinyshakespeare.txt"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cuda-graphs", action="store_true", help="also the plain loop under CUDA graphs")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    variants = {"tuigpt": tuigpt_steps(args.data, args.batch, args.accum), "plain": plain_steps(args.batch, args.accum)}
    if args.cuda_graphs:
        variants["plain, CUDA graphs"] = plain_steps(args.batch, args.accum, "reduce-overhead")
    for run in variants.values():
        run(25)  # compile and warm up
    wall: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(args.rounds):  # the variants alternate
        for name, run in variants.items():
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            run(args.steps)
            torch.cuda.synchronize()
            wall[name].append((time.perf_counter() - t0) * 1000 / args.steps)
    results = {}
    for name, run in variants.items():
        results[name] = timeline(run, args.steps)
        span, busy, _ = results[name]
        rounds = ", ".join(f"{ms:.2f}" for ms in wall[name])
        print(f"{name}: {statistics.median(wall[name]):.2f} ms a step by the wall clock ({rounds}); profiled: "
              f"{span:.2f} from first kernel to last, GPU busy {busy:.2f}, idle {span - busy:.2f}", flush=True)
    ours, theirs = results["tuigpt"][2], results["plain"][2]
    diffs = sorted(((ours.get(k, 0.0) - theirs.get(k, 0.0), k) for k in set(ours) | set(theirs)),
                   key=lambda d: -abs(d[0]))
    print(f"kernel ms a step: tuigpt {sum(ours.values()):.2f}, plain {sum(theirs.values()):.2f}; largest "
          f"differences (tuigpt - plain):")
    for diff, name in diffs[:25]:
        print(f"  {diff:+8.3f}  {ours.get(name, 0.0):8.3f} {theirs.get(name, 0.0):8.3f}  {name}")


if __name__ == "__main__":
    main()
