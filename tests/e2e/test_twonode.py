"""Two machines on one box: two network namespaces joined by a shaped veth pair (tests/support/netns.py), each
with its own host name, each running `torchrun --nnodes=2 --node_rank=R --master_addr=<node 0>`.

Trains to the end with checkpoints and resume, shows both hosts' ranks, checks netcheck's prediction against
the measured speed-up, names a CPU-throttled node as the straggler, ends cleanly when the other node is killed
or its cable pulled, and refuses a rank with no route to node 0. Needs root, iproute2 and cgroups; skipped,
with the reason, where they cannot be had.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import REPO
from support import wait_for
from support.netns import GIGABIT, WIFI, CpuGroup, NetnsPair, pinned, unavailable, wall_ms_per_iter
from tuigpt.engine.checkpoint import load_checkpoint
from tuigpt.run.metrics_log import read_metrics
from tuigpt.run.speedup import measured_speedup

TIMEOUT = 20  # ddp_timeout: a lost node must end the other well within it
TWO = ["--headless", "--gradient_accumulation_steps=2", f"--ddp_timeout={TIMEOUT}"]
# the speed-up check: a model whose step is mostly compute (~10 ms a micro-step on one core), not scheduling
SMALL = ["--n_embd=64", "--block_size=64", "--batch_size=8", "--eval_iters=1"]
AGREE = 0.25


@pytest.fixture(scope="module")
def pair():
    why_not = unavailable()
    if why_not is not None:
        pytest.skip(f"two-node tests need network namespaces and cgroups: {why_not}")
    with NetnsPair(GIGABIT) as made:
        yield made


@pytest.fixture(scope="module")
def owned(pair: NetnsPair):
    """A cgroup of the largest CPU weight per node: each "machine" gets its core, whatever else the box is doing
    (timings mean something, and the tests take the same time on a busy box; the single process of the
    speed-up check runs in node 0's)."""
    groups = [CpuGroup(owned=True), CpuGroup(owned=True)]
    yield groups
    for group in groups:
        group.remove()


class Node:
    """One node's torchrun, its output going to files (nothing blocks on a full pipe)."""

    def __init__(self, command: list[str], env: dict, logs: Path, name: str) -> None:
        self.out_path, self.err_path = logs / f"{name}.out", logs / f"{name}.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env, cwd=REPO,
                                         stdin=subprocess.DEVNULL)

    @property
    def out(self) -> str:
        return self.out_path.read_text()

    @property
    def err(self) -> str:
        return self.err_path.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                child.kill()
            self.proc.kill()
            self.proc.wait()


_launches = iter(range(1_000_000))


def launch(pair: NetnsPair, args: list[str], env: dict, logs: Path, groups: list[CpuGroup]) -> list[Node]:
    """Node 0 and node 1, each pinned to its own core, in its own cgroup."""
    k = next(_launches)
    return [Node(pair.command(node, pair.torchrun(node, sys.executable, args), cpu=node, group=groups[node]), env,
                 logs, f"launch{k}-node{node}") for node in (0, 1)]


def finish(nodes: list[Node], timeout: float = 150) -> str:
    """Wait for both nodes to succeed and return node 0's output; a node that fails ends the other (which would
    otherwise wait for it at the rendezvous)."""
    try:
        wait_for(lambda: all(n.proc.poll() is not None for n in nodes) or any(n.proc.poll() for n in nodes),
                 timeout=timeout, what="both nodes to finish", poll=0.2)
    finally:
        for n in nodes:
            n.kill()
    for i, n in enumerate(nodes):
        assert n.proc.returncode == 0, f"node {i} exited {n.proc.returncode}:\n{n.out[-1500:]}\n{n.err[-2500:]}"
    return nodes[0].out


def test_two_nodes_train_to_the_end_resume_and_show_both_hosts(pair: NetnsPair, tiny_yaml: Path, cli_env,
                                                                tmp_path: Path, owned: list[CpuGroup]) -> None:
    run_dir = tiny_yaml.parent / "runs" / "tiny"
    out = finish(launch(pair, [str(tiny_yaml), *TWO, "--max_iters=12", "--eval_interval=6", "--log_interval=3",
                               "--netcheck"], cli_env, tmp_path, owned))
    lines = out.splitlines()
    # netcheck first, its first line naming the interface that routes to node 0, then the training
    assert lines[0].startswith(f"netcheck: 2 ranks on 2 host(s) (tg-node0, tg-node1), gloo over {pair.dev[0]} "
                               f"({pair.addr[0]}), the interface routing to master_addr {pair.addr[0]}"), lines[0]
    assert f"{pair.dev[1]} on tg-node1" in lines[0]
    assert re.search(r"^verdict: (2 nodes ≈ \d+\.\d\d×|the link costs more than it saves: \d+\.\d\d×)", out, re.M)
    assert "data parallel: 2 ranks on 2 host(s) (tg-node0, tg-node1)" in out
    records = read_metrics(run_dir / "metrics.jsonl")
    assert any(r["type"] == "notice" and r["message"].startswith("netcheck: ") for r in records)
    cluster = [r for r in records if r["type"] == "cluster"]
    assert [c["iter"] for c in cluster] == [3, 6, 9, 12]
    assert [(r["rank"], r["host"]) for r in cluster[-1]["ranks"]] == [(0, "tg-node0"), (1, "tg-node1")]
    evals = [r["val_loss"] for r in records if r["type"] == "eval"]
    assert evals[-1] < evals[0] - 0.2
    saved = load_checkpoint(run_dir / "last.pt")
    assert saved["iter_num"] == 12 and saved["world_size"] == 2 and len(saved["samplers"]) == 2

    from tuigpt.run.records import event_from_record
    from tuigpt.ui.widgets.cluster import ClusterPane

    pane = ClusterPane.describe(event_from_record(cluster[-1])).plain  # what the monitor's Cluster pane shows
    assert re.search(r"^ 0 tg-node0 ", pane, re.M) and re.search(r"^ 1 tg-node1 ", pane, re.M), pane

    out = finish(launch(pair, [str(tiny_yaml), *TWO, "--resume", "--max_iters=18", "--eval_interval=6",
                               "--log_interval=3"], cli_env, tmp_path, owned))
    assert "tuigpt resuming tiny" in out and "iter 12/18" in out
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["iter"] for r in records if r["type"] == "iter"][-3:] == [12, 15, 18]
    assert load_checkpoint(run_dir / "last.pt")["iter_num"] == 18


def _speedups(pair: NetnsPair, tiny_yaml: Path, env: dict, logs: Path, owned: list[CpuGroup],
              attempt: int) -> tuple[float, float, str]:
    """(predicted, measured, netcheck's report): netcheck, then 2 nodes, then 1 process on the same global batch."""
    # 190 timed iterations (~4 s): over 50 (~1 s) a busy spell of the VM moved the measured speed-up by 15-25%
    common = [*TWO, *SMALL, "--max_iters=200", "--eval_interval=1000", "--log_interval=10"]
    report = finish(launch(pair, ["netcheck", str(tiny_yaml), *common], env, logs, owned))
    predicted = float(re.search(r"^verdict: .*?(\d+\.\d\d)×", report, re.M).group(1))
    finish(launch(pair, [str(tiny_yaml), *common, f"--run_name=two{attempt}"], env, logs, owned))
    one = subprocess.run([*owned[0].prefix, *pinned(0), sys.executable, "-m", "tuigpt", str(tiny_yaml), *common,
                          f"--run_name=one{attempt}"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr[-2000:]
    runs = tiny_yaml.parent / "runs"
    measured = measured_speedup(wall_ms_per_iter(runs / f"one{attempt}" / "metrics.jsonl", skip=10),
                                wall_ms_per_iter(runs / f"two{attempt}" / "metrics.jsonl", skip=10))
    return predicted, measured, report


def test_netcheck_predicts_the_measured_speedup_over_gigabit_and_sees_wifi_slower(pair: NetnsPair, tiny_yaml: Path,
                                                                                 cli_env, tmp_path: Path,
                                                                                 owned: list[CpuGroup]) -> None:
    """Within 25%. A second attempt is allowed, and reported, because another process on a shared 2-core box can
    slow one of the three runs alone; a prediction that is wrong by design fails both."""
    tried = []
    for attempt in range(2):
        predicted, measured, report = _speedups(pair, tiny_yaml, cli_env, tmp_path, owned, attempt)
        tried.append(f"predicted {predicted:.2f}x, measured {measured:.2f}x")
        if abs(predicted / measured - 1) <= AGREE:
            break
    else:
        pytest.fail(f"netcheck's prediction is off by more than {AGREE:.0%}: {'; '.join(tried)}\n{report}")
    gigabit = float(re.search(r"^link: all-reduce of the gradients ([\d.]+) ms", report, re.M).group(1))

    pair.shape(WIFI)
    try:
        wifi = finish(launch(pair, ["netcheck", str(tiny_yaml), "--seconds=1", *TWO, *SMALL], cli_env, tmp_path,
                             owned))
    finally:
        pair.shape(GIGABIT)
    rate = re.search(r"^link: all-reduce of the gradients ([\d.]+) (ms|s) \(([\d.]+) (Mbit|kbit)/s", wifi, re.M)
    assert rate is not None, wifi
    assert float(rate.group(3)) < 300 if rate.group(4) == "Mbit" else True  # the Wi-Fi link's fastest rate
    assert float(rate.group(1)) * (1000 if rate.group(2) == "s" else 1) > gigabit, (report, wifi)


def rank_process(node: Node, rank: int) -> psutil.Process:
    """The worker of ``rank`` under a node's torchrun."""
    return wait_for(lambda: [c for c in psutil.Process(node.proc.pid).children(recursive=True)
                             if c.environ().get("RANK") == str(rank)], what=f"rank {rank}'s process")[0]


def joined(pid: int, master: str) -> bool:
    """Whether a worker has a TCP connection to node 0 (torch imported, the data loaded, the group being joined).
    Read from /proc/PID: psutil would look in this test's network namespace, not the worker's."""
    try:
        sockets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        rows = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    remote = socket.inet_aton(master)[::-1].hex().upper()  # /proc/net/tcp writes IPv4 little-endian
    return any(f[2].startswith(remote) and f"socket:[{f[9]}]" in sockets for f in (r.split() for r in rows))


def test_a_throttled_node_is_named_as_the_straggler(pair: NetnsPair, tiny_yaml: Path, cli_env, tmp_path: Path,
                                                    owned: list[CpuGroup]) -> None:
    """Node 1 gets 20% of its core from the moment it joins the group (a laptop throttling hard once it works;
    from the start, importing torch alone would take it half a minute); node 0 has its core."""
    limit = CpuGroup(quota=0.2)
    try:
        nodes = launch(pair, [str(tiny_yaml), *TWO, *SMALL, "--max_iters=20", "--eval_interval=1000",
                              "--log_interval=2", "--netcheck"], cli_env, tmp_path, owned)
        worker = rank_process(nodes[1], 1)
        wait_for(lambda: joined(worker.pid, pair.addr[0]), what="rank 1 to join", poll=0.02)
        limit.add(worker.pid)
        out = finish(nodes)
    finally:
        limit.remove()
    assert re.search(r"^balance: slowest/fastest rank \d+\.\d\d: rank 1 \(tg-node1\) is a straggler", out, re.M), out
    assert "warning: straggler: rank 1 (tg-node1)" in out, out


def test_killing_the_other_node_ends_this_one_within_ddp_timeout_with_last_pt(pair: NetnsPair, tiny_yaml: Path,
                                                                               cli_env, tmp_path: Path,
                                                                               owned: list[CpuGroup]) -> None:
    node0, node1 = launch(pair, [str(tiny_yaml), *TWO, "--max_iters=100000", "--eval_interval=8",
                                 "--log_interval=1"], cli_env, tmp_path, owned)
    try:
        wait_for(lambda: "(iter 8, eval" in node0.out and "iter 12/" in node0.out or node0.proc.poll() is not None,
                 timeout=120, what="a checkpoint and 4 more iterations")
        assert node0.proc.poll() is None, node0.err[-2000:]
        rank_process(node1, 1).send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: node0.proc.poll() is not None, timeout=TIMEOUT + 30, what="node 0 to stop")
        took = time.monotonic() - killed
    finally:
        node0.kill()
        node1.kill()
    out, err = node0.out, node0.err
    assert node0.proc.returncode != 0 and took < TIMEOUT, (took, err[-2000:])
    stopped = re.search(r"tuigpt: rank 0 stopped: rank 0 lost the group .*; last\.pt at iteration (\d+) saved", err)
    assert stopped is not None, err[-2000:]
    assert re.search(r"checkpoint \S+last\.pt \(iter \d+, failure", out), out[-1500:]
    saved = load_checkpoint(tiny_yaml.parent / "runs" / "tiny" / "last.pt")
    assert saved["iter_num"] == int(stopped.group(1)) >= 12


def test_a_pulled_cable_ends_both_nodes_after_ddp_timeout_with_last_pt(pair: NetnsPair, tiny_yaml: Path, cli_env,
                                                                        tmp_path: Path, owned: list[CpuGroup]) -> None:
    """No reset reaches node 0 when the link goes down: it is the collective's timeout that ends it."""
    timeout = 6
    node0, node1 = launch(pair, [str(tiny_yaml), *TWO, f"--ddp_timeout={timeout}", "--max_iters=100000",
                                 "--eval_interval=8", "--log_interval=2"], cli_env, tmp_path, owned)
    try:
        wait_for(lambda: "(iter 8, eval" in node0.out or node0.proc.poll() is not None, timeout=120,
                 what="a checkpoint")
        subprocess.run(["ip", "-n", pair.ns[1], "link", "set", pair.dev[1], "down"], check=True)
        pulled = time.monotonic()
        wait_for(lambda: node0.proc.poll() is not None and node1.proc.poll() is not None, timeout=timeout + 60,
                 what="both nodes to stop")
        took = time.monotonic() - pulled
    finally:
        subprocess.run(["ip", "-n", pair.ns[1], "link", "set", pair.dev[1], "up"], check=True)
        node0.kill()
        node1.kill()
    assert node0.proc.returncode != 0 and node1.proc.returncode != 0
    assert timeout - 1 <= took < timeout + 20, took  # the collective under way when the link went down
    assert re.search(r"rank 0 stopped: .*Timed out .*; last\.pt at iteration \d+ saved", node0.err), node0.err[-2000:]
    assert "tuigpt rank 1 stopped: rank 1 lost the group" in node1.err, node1.err[-2000:]
    assert re.search(r"checkpoint \S+last\.pt \(iter \d+, failure", node0.out), node0.out[-1500:]


def test_no_route_to_master_is_one_line_naming_the_interfaces(pair: NetnsPair, tiny_yaml: Path, cli_env) -> None:
    env = dict(cli_env, WORLD_SIZE="2", RANK="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="10.99.0.1",
               MASTER_PORT="29500")  # as torchrun would start node 1 with a master address off this network
    env.pop("GLOO_SOCKET_IFNAME", None)
    done = subprocess.run(pair.command(1, [sys.executable, "-m", "tuigpt", "netcheck", str(tiny_yaml),
                                           "--gradient_accumulation_steps=2"]),
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: no route from this host to master_addr 10.99.0.1"), done.stderr
    assert "GLOO_SOCKET_IFNAME=<name>; interfaces here: " in done.stderr and pair.dev[1] in done.stderr
