"""`tuigpt netcheck` on one machine (2 gloo ranks over loopback): runs anywhere, root or not. The two-machine
version, over a shaped link, is in test_twonode.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_netcheck_on_one_machine_reports_the_loopback_and_a_verdict(tiny_yaml: Path, cli_env) -> None:
    env = {k: v for k, v in cli_env.items() if k != "GLOO_SOCKET_IFNAME"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "tuigpt", "netcheck", str(tiny_yaml), "--gradient_accumulation_steps=4",
                           "--rounds=2", "--seconds=0.5", "--headless"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert re.match(r"netcheck: 2 ranks on 1 host\(s\) \(\S+\), gloo over lo \(127\.0\.0\.1\), the interface routing "
                    r"to master_addr \S+$", lines[0]), lines[0]
    assert "4 micro-batch(es) of 4 x 32 tokens per iteration, 2 per rank" in lines[1]
    heads = [line.split(":")[0].split(" on ")[0] for line in lines[2:]]
    if "note" in heads:  # an iteration under 20 ms: the prediction says what it leaves out
        assert "is mostly fixed costs" in lines[2 + heads.index("note")]
        heads.remove("note")
    assert heads == ["rank 0", "rank 1", "link", "comm vs backward", "balance", "prediction", "verdict"]
    assert re.match(r"verdict: (2 ranks ≈ \d+\.\d\d×|the link costs more than it saves: \d+\.\d\d×)", lines[-1])
    assert not (tiny_yaml.parent / "runs").exists()  # netcheck writes nothing
