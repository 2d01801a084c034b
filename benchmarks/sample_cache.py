"""Generation with the key/value cache against recomputing the whole context each token (tuigpt's sampling
before issue 22), for both blocks, alternating in one process.

A sample (the `s` key, `tuigpt sample`) stops training while it runs; each new token costs one position's
forward with the cache, the whole context's without it, until the context fills block_size (then both re-read
the last block_size tokens, and cost the same). Prints ms per sampled token and the speed-up, median of rounds.

    python benchmarks/sample_cache.py [--models default,gpt2] [--tokens 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuigpt.engine.model import GPT, ModelArgs  # noqa: E402
from tuigpt.engine.sampling import generate  # noqa: E402
from tuigpt.run.config import ARCHS  # noqa: E402

SHAPES = {  # (vocab, block, layers, heads, width): the default CPU config and GPT-2 small
    "default": (65, 64, 1, 4, 256),
    "gpt2": (50304, 1024, 12, 12, 768),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(SHAPES))
    parser.add_argument("--tokens", type=int, default=60, help="new tokens a sample (the default config: 64 fit)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__} | {torch.get_num_threads()} threads | {args.tokens} new tokens after a "
          f"4-token prompt, greedy", flush=True)
    print("| model | block | cached ms/token | uncached ms/token | speed-up (median) |\n|---|---|---|---|---|")
    for name in args.models.split(","):
        vocab, block, layers, heads, width = SHAPES[name]
        for arch in ARCHS:
            torch.manual_seed(0)
            model = GPT(ModelArgs(vocab, block, layers, heads, width, **ARCHS[arch])).eval()
            prompt = torch.randint(0, vocab, (1, 4))
            times: dict[bool, list[float]] = {True: [], False: []}
            generate(model, prompt, 4)  # warm-up
            for r in range(args.rounds):
                for cache in (True, False) if r % 2 == 0 else (False, True):
                    t0 = time.perf_counter()
                    generate(model, prompt, args.tokens, temperature=0.0, cache=cache)
                    times[cache].append((time.perf_counter() - t0) * 1000 / args.tokens)
            cached, uncached = statistics.median(times[True]), statistics.median(times[False])
            ratios = [u / c for c, u in zip(times[True], times[False])]
            print(f"| {name} | {arch} | {cached:.2f} | {uncached:.2f} | {statistics.median(ratios):.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
