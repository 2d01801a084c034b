"""Does `tuigpt netcheck` predict what a second machine really gains? Two network namespaces on one box.

Needs root and iproute2. Builds two "machines" (tests/support/netns.py: two network namespaces joined by a
veth pair shaped like gigabit Ethernet or Wi-Fi, host names tg-node0 and tg-node1), then per repeat, in
this order:
  1. netcheck: `torchrun --nnodes=2 --node_rank=R ... -m tuigpt netcheck CONFIG` in each namespace
     → its predicted speed-up;
  2. two nodes: the same launch of `tuigpt CONFIG --headless` for --iters iterations → wall ms/iter;
  3. one process: `tuigpt CONFIG --headless` alone → wall ms/iter;
and prints predicted vs measured (ms/iter of 3 over ms/iter of 2).

Fair on a small box: every rank and the single process run ONE thread pinned to its own core (rank r on
core r, the single process on core 0), each node in a cgroup of the largest CPU weight (so the box's other
work waits while it is timed: each "machine" has its core), and all three train the same global batch:
gradient_accumulation_steps stays the config's (2 when the config says 1, so it divides over 2 ranks), i.e. the
same tokens per iteration.
What this measures is the parallel speed-up of 2 cores that talk through a shaped link, not of 2 laptops:
both "machines" share the memory bus and the host's other load.

Usage: sudo python benchmarks/twonode_speedup.py CONFIG [--profile gigabit|wifi] [--iters N] [--repeats K]
                                                [--rounds R] [--key=value ...]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.netns import PROFILES, CpuGroup, NetnsPair, pinned, unavailable, wall_ms_per_iter  # noqa: E402

from tuigpt.run.speedup import measured_speedup  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
PREDICTED = re.compile(r"^verdict: .*?(\d+\.\d+)×", re.M)


def overrides(config: str, iters: int, out_dir: str) -> list[str]:
    import yaml

    values = yaml.safe_load(Path(config).read_text()) or {}
    gas = int(values.get("gradient_accumulation_steps", 1))
    gas = gas if gas % 2 == 0 else gas * 2
    return [f"--gradient_accumulation_steps={gas}", "--num_threads=1", f"--max_iters={iters}",
            f"--eval_interval={iters * 10}", "--eval_iters=1", f"--log_interval={min(10, max(1, iters // 6))}",
            "--telemetry_interval=0",
            f"--out_dir={out_dir}", f"--data_path={SHARED / 'tinyshakespeare.txt'}", "--ddp_timeout=120",
            "--always_save_checkpoint=false"]


def pair_run(pair: NetnsPair, args: list[str], env: dict[str, str], groups: list[CpuGroup]) -> str:
    """Both nodes' torchrun; node 0's output. A node that fails ends the other (it would wait at the rendezvous)."""
    with tempfile.TemporaryFile("w+") as out0, tempfile.TemporaryFile("w+") as out1:
        outs = (out0, out1)
        procs = [subprocess.Popen(pair.command(n, pair.torchrun(n, sys.executable, args), cpu=n, group=groups[n]),
                                  env=env, cwd=REPO, stdout=outs[n], stderr=subprocess.STDOUT, text=True)
                 for n in (0, 1)]
        try:
            while not all(p.poll() is not None for p in procs) and not any(p.poll() for p in procs):
                time.sleep(0.2)
        finally:
            for p in procs:
                if p.poll() is None:
                    for child in psutil.Process(p.pid).children(recursive=True):
                        child.kill()
                    p.kill()
                p.wait()
        texts = []
        for f in outs:
            f.seek(0)
            texts.append(f.read())
    if any(p.returncode for p in procs):
        raise SystemExit("a node failed:\n" + "\n".join(f"node {n} exited {p.returncode}:\n{text[-3000:]}"
                                                        for n, (p, text) in enumerate(zip(procs, texts))))
    return "\n".join(line for line in texts[0].splitlines() if not line.startswith(("W1", "[W")))


def measure(ns: argparse.Namespace, extra: list[str], env: dict[str, str], groups: list[CpuGroup]) -> list[tuple]:
    """(predicted, measured) per repeat: netcheck, then two nodes, then one process."""
    skip = max(3, ns.iters // 5)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tuigpt-twonode-") as tmp, NetnsPair(PROFILES[ns.profile]) as pair:
        print(f"link: {ns.profile}, {pair.shaping}; config {ns.config} {' '.join(extra)}", flush=True)
        for k in range(ns.repeats):
            common = overrides(ns.config, ns.iters, tmp) + extra
            report = pair_run(pair, ["netcheck", ns.config, f"--rounds={ns.rounds}", *common], env, groups)
            predicted = float(PREDICTED.search(report).group(1))
            if k == 0:
                print(report.rstrip(), flush=True)
            pair_run(pair, [ns.config, "--headless", f"--run_name=two{k}", *common], env, groups)
            two = wall_ms_per_iter(Path(tmp) / f"two{k}" / "metrics.jsonl", skip)
            one_cmd = [*groups[0].prefix, *pinned(0), sys.executable, "-m", "tuigpt", ns.config, "--headless",
                       f"--run_name=one{k}", *common]
            done = subprocess.run(one_cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise SystemExit(f"the single process failed:\n{done.stderr[-2000:]}")
            one = wall_ms_per_iter(Path(tmp) / f"one{k}" / "metrics.jsonl", skip)
            measured = measured_speedup(one, two)
            rows.append((predicted, measured))
            print(f"repeat {k + 1}: predicted {predicted:.2f}x | measured {measured:.2f}x (one process "
                  f"{one:.1f} ms/iter, two nodes {two:.1f} ms/iter) | predicted/measured {predicted / measured:.2f}",
                  flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="gigabit")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    ns, extra = parser.parse_known_args()
    why = unavailable()
    if why:
        raise SystemExit(f"cannot run: {why}")
    env = dict(os.environ, PYTHONUNBUFFERED="1", TIKTOKEN_CACHE_DIR=str(SHARED / "tiktoken-cache"))
    groups = [CpuGroup(owned=True), CpuGroup(owned=True)]
    try:
        rows = measure(ns, extra, env, groups)
    finally:
        for group in groups:
            group.remove()
    pred = statistics.median(r[0] for r in rows)
    meas = statistics.median(r[1] for r in rows)
    print(f"median of {len(rows)}: predicted {pred:.2f}x, measured {meas:.2f}x, predicted/measured {pred / meas:.2f}")


if __name__ == "__main__":
    main()
