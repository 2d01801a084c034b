"""How long a sample takes on a GPU: generation's attention backends (engine/sampling.py) against torch's own pick.

A sample's context grows by one token a step, so every step's attention has a new shape. On Hopper torch 2.11
picks cuDNN attention first, and cuDNN builds an execution plan for each new shape; generation therefore runs
with flash / memory-efficient / math attention instead. Each variant runs in a fresh process (plans are cached
per process): the first sample (cold, what the `s` key costs the first time at that prompt length) and a second
one of the same length (warm), alternating between the variants.

    python benchmarks/gpu_sample.py [--rounds 2] [--tokens 200] [--layers 12 --embd 768 --heads 12 --block 1024]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(args: argparse.Namespace) -> None:
    """In a fresh process: cold and warm seconds of a sample, as JSON on stdout."""
    sys.path.insert(0, str(REPO))
    import torch

    from tuigpt.engine import sampling
    from tuigpt.engine.model import GPT, ModelArgs

    if args.variant == "torch":
        sampling.varying_length_attention = lambda device: contextlib.nullcontext()  # torch's own order
    device = torch.device("cuda")
    model = GPT(ModelArgs(vocab_size=50304, block_size=args.block, n_layer=args.layers, n_head=args.heads,
                          n_embd=args.embd)).to(device).eval()
    prompt = torch.zeros((1, 1), dtype=torch.long, device=device)
    times = []
    for _ in range(2):
        generator = torch.Generator(device=device).manual_seed(0)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            sampling.generate(model, prompt, args.tokens, temperature=0.8, top_k=200, generator=generator)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"cold": times[0], "warm": times[1]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--embd", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--variant", choices=("ours", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        one(args)
        return
    shape = ["--tokens", str(args.tokens), "--layers", str(args.layers), "--embd", str(args.embd),
             "--heads", str(args.heads), "--block", str(args.block)]
    cold: dict[str, list[float]] = {"ours": [], "torch": []}
    print(f"{args.tokens} tokens, {args.layers} layers x {args.embd}, one sequence, bf16 autocast", flush=True)
    for r in range(1, args.rounds + 1):
        for variant in ("ours", "torch") if r % 2 else ("torch", "ours"):
            out = subprocess.run([sys.executable, __file__, "--variant", variant, *shape], capture_output=True,
                                 text=True, check=True).stdout
            t = json.loads(out.strip().splitlines()[-1])
            cold[variant].append(t["cold"])
            print(f"round {r}  {variant:<5}  first sample {t['cold']:.2f} s · second {t['warm']:.2f} s", flush=True)
    ours, theirs = statistics.median(cold["ours"]), statistics.median(cold["torch"])
    print(f"first sample, median: generation's backends {ours:.2f} s · torch's pick {theirs:.2f} s "
          f"({theirs / ours:.1f}x)")


if __name__ == "__main__":
    main()
