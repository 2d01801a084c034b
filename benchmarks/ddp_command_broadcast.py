"""What the per-iteration command broadcast costs a data-parallel run: µs per broadcast and % of an iteration.

Starts 2 gloo ranks on 127.0.0.1 (torch.multiprocessing), then on each rank
1. times ROUNDS broadcasts of the empty command tensor (what every iteration boundary sends when no key was
   pressed; the tensor is the same size with commands in it), alternating with ROUNDS of the per-step loss
   all-reduce, for comparison;
2. trains the tiny test config (2 layers x 32, block 32, batch 4, gradient_accumulation_steps 2, so one
   micro-step per rank) with the real Trainer and times its iterations, boundary broadcast included.
Rank 0 prints the medians. Usage: python benchmarks/ddp_command_broadcast.py [rounds] [iterations]
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4, eval_iters=2, eval_interval=100000,
            log_interval=10, warmup_iters=2, dtype="float32", device="cpu", telemetry_interval=0.0, num_threads=1,
            gradient_accumulation_steps=2, ddp_timeout=60.0)


def rank_main(rank: int, port: int, rounds: int, iterations: int, out_dir: str) -> None:
    from tuigpt.engine.distributed import launch_env, start_cluster
    from tuigpt.engine.gate import MAX_COMMANDS, encode_commands
    from tuigpt.engine.trainer import Trainer
    from tuigpt.run.config import TrainConfig

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    torch.set_num_threads(1)
    cluster = start_cluster(launch_env(), "gloo", torch.device("cpu"), 60.0)
    size = 1 + 2 * MAX_COMMANDS
    empty = encode_commands([])
    loss = torch.zeros(())
    broadcast_us, reduce_us = [], []
    for _ in range(200):  # warm up the connections
        cluster.broadcast_words(empty if rank == 0 else None, size)
    for _ in range(rounds):
        t0 = time.perf_counter()
        cluster.broadcast_words(empty if rank == 0 else None, size)
        t1 = time.perf_counter()
        cluster.mean_tensor(loss, "benchmark")
        t2 = time.perf_counter()
        broadcast_us.append((t1 - t0) * 1e6)
        reduce_us.append((t2 - t1) * 1e6)

    config = TrainConfig(**TINY, max_iters=iterations, run_name="bench", out_dir=out_dir, data_path=str(DATA))
    trainer = Trainer(config, cluster=cluster)
    step_ms = []
    for _ in range(iterations):
        trainer._boundary()  # the boundary broadcast, as in the loop
        step_ms.append(trainer.train_step().ms)
    iteration_us = statistics.median(step_ms[10:]) * 1000 + statistics.median(broadcast_us)
    if rank == 0:
        b = statistics.median(broadcast_us)
        print(f"2 gloo ranks on 127.0.0.1, {rounds} rounds, torch {torch.__version__}, {os.cpu_count()} CPUs")
        print(f"command broadcast ({size} int64): median {b:.1f} µs, p90 "
              f"{statistics.quantiles(broadcast_us, n=10)[-1]:.1f} µs")
        print(f"loss all-reduce (1 float32):  median {statistics.median(reduce_us):.1f} µs")
        print(f"tiny-config iteration: median {iteration_us / 1000:.2f} ms -> the broadcast is "
              f"{100 * b / iteration_us:.2f}% of an iteration")
    cluster.close()


def main(rounds: int = 2000, iterations: int = 60) -> int:
    if not DATA.exists():
        print(f"needs {DATA} (the tiny Shakespeare corpus beside the repository)", file=sys.stderr)
        return 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out_dir:
        torch.multiprocessing.spawn(rank_main, args=(port, rounds, iterations, out_dir), nprocs=2, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:3])))
