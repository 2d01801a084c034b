"""Data parallel training on 2 CPU processes (gloo, 127.0.0.1): torchrun launches, equal replicas, the same
numbers as one process, commands on every rank, a dead rank, SIGTERM, and checkpoints across world sizes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import torch

from tuigpt.engine.checkpoint import load_checkpoint
from tuigpt.engine.gate import MAX_COMMANDS, decode_commands, encode_commands
from tuigpt.engine.distributed import launch_env
from tuigpt.engine.rank_timing import STRAGGLER_GATHERS, StragglerWatch, cluster_summary, split_step
from tuigpt.run.errors import UserError
from tuigpt.run.commands import CheckpointNow, Pause, Resume, SetEvalInterval, Stop, TogglePause
from tuigpt.run.events import ClusterStats
from tuigpt.run.metrics_log import read_metrics

from conftest import REPO  # noqa: E402
TIMEOUT = 20  # ddp_timeout of the torchrun runs: a lost rank must end them well within it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tiny_yaml: Path, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "tuigpt",
                             str(tiny_yaml), "--headless", f"--ddp_timeout={TIMEOUT}",
                             "--gradient_accumulation_steps=2", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                            stdin=subprocess.DEVNULL)


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 60) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            lines.append(proc.stderr.read()[-3000:])  # it ended: show why
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no line matching {pattern!r}; got {lines[-5:]}")


def ranks_of(proc: subprocess.Popen) -> dict[int, psutil.Process]:
    out = {}
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            rank = child.environ().get("RANK")
        except psutil.Error:
            continue
        if rank is not None:
            out[int(rank)] = child
    return out


# ---------------------------------------------------------------- pure parts


def test_commands_survive_the_wire() -> None:
    sent = [Pause(), Resume(), TogglePause(), CheckpointNow(), SetEvalInterval(7), Stop(save=False)]
    words = encode_commands(sent, halt="disk")
    assert len(words) == 1 + 2 * MAX_COMMANDS
    assert decode_commands(words) == (sent, "disk")
    assert decode_commands(encode_commands([])) == ([], None)


def test_step_split_times_the_sync_backward_against_the_others() -> None:
    # two micro-steps: data, forward, backward each; the synced backward is 5 ms longer
    parts = split_step([1.0, 10.0, 20.0, 1.0, 10.0, 25.0], 2)
    assert parts == {"data_ms": 2.0, "compute_ms": 60.0, "comm_ms": 5.0, "backward_ms": 40.0}
    one = split_step([1.0, 10.0, 26.0], 1)  # one micro-step: a backward is taken as twice the forward
    assert one["comm_ms"] == 6.0 and one["backward_ms"] == 20.0


def _ranks(*busy: float, comm: float = 1.0, backward: float = 10.0) -> list[dict]:
    return [{"rank": r, "host": f"h{r}", "ms_per_iter": 50.0, "data_ms": 0.0, "compute_ms": b, "comm_ms": comm,
             "backward_ms": backward} for r, b in enumerate(busy)]


def test_a_persistent_straggler_is_reported_once_and_a_blip_is_not() -> None:
    watch = StragglerWatch()
    assert watch.check(_ranks(30.0, 40.0)) == (None, [])  # one slow gather: a blip
    assert watch.check(_ranks(30.0, 30.0)) == (None, [])
    flagged = [watch.check(_ranks(30.0, 36.0)) for _ in range(STRAGGLER_GATHERS)]
    assert [f[0] for f in flagged] == [None] * (STRAGGLER_GATHERS - 1) + [1]
    assert "straggler: rank 1 (h1)" in flagged[-1][1][0]
    assert watch.check(_ranks(30.0, 36.0)) == (1, [])  # still flagged, not repeated
    ratio, comm_over_compute = cluster_summary(_ranks(30.0, 36.0))
    assert ratio == pytest.approx(1.2) and comm_over_compute == pytest.approx(2 / 66)


def test_communication_longer_than_the_backward_is_reported() -> None:
    straggler, warnings = StragglerWatch().check(_ranks(30.0, 30.0, comm=12.0, backward=10.0))
    assert straggler is None and "communication outlasts the backward pass" in warnings[0]


def test_a_batch_the_ranks_cannot_share_evenly_names_the_flags_that_fix_it(tiny_config) -> None:
    from tuigpt.engine.trainer import Trainer

    with pytest.raises(UserError, match=r"batch_size=4 × gradient_accumulation_steps=4 = 16 sequences per iteration "
                                        r"cannot be shared evenly by 3 ranks: use --batch_size=3 or --batch_size=6 or "
                                        r"--gradient_accumulation_steps=6"):
        Trainer(tiny_config(gradient_accumulation_steps=4), cluster=SimpleNamespace(rank=0, world_size=3))


def test_torchrun_environment_is_detected() -> None:
    assert launch_env({}) is None
    env = launch_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (env.rank, env.local_rank, env.world_size, env.local_world_size) == (3, 1, 4, 2)


# ---------------------------------------------------------------- ranks spawned in-process


class FixedBatches:
    """Replaces a sampler's train batches with fixed ones, the same global batch wherever it runs: step s's global
    batch is batches[s * gas .. s * gas + gas - 1] stacked (gas x 4 sequences), and micro-step m of a rank takes
    its own rows of it (rank * micro + m)-th slice of micro_batch sequences."""

    def __init__(self, original, batches, rank: int, micro: int, gas: int, micro_batch: int) -> None:
        self.original, self.batches = original, batches
        self.rank, self.micro, self.gas, self.micro_batch, self.calls = rank, micro, gas, micro_batch, 0

    def __call__(self, split: str, generator=None):
        if split != "train" or generator is not None:
            return self.original(split, generator=generator)
        step, m = divmod(self.calls, self.micro)
        self.calls += 1
        parts = [self.batches[(step * self.gas + k) % len(self.batches)] for k in range(self.gas)]
        x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        first = (self.rank * self.micro + m) * self.micro_batch
        rows = slice(first, first + self.micro_batch)
        return x[rows], y[rows]


def _batches(n: int = 24) -> list:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        x = torch.randint(0, 65, (4, 32), generator=g)
        out.append((x, torch.roll(x, -1, 1)))
    return out


def _train_with_fixed_batches(config, cluster=None, pause_for: float = 0.0):
    from tuigpt.engine.trainer import Trainer

    trainer = Trainer(config, cluster=cluster)
    trainer.sampler.get_batch = FixedBatches(trainer.sampler.get_batch, _batches(), trainer.rank,
                                             trainer.micro_steps, config.gradient_accumulation_steps,
                                             trainer.split.micro_batch)
    if pause_for:  # longer than ddp_timeout: rank 0's heartbeats keep the others from timing out
        trainer.send(Pause())
        threading.Timer(pause_for, trainer.send, (Resume(),)).start()
    trainer.run()
    return trainer


def _spawned_rank(rank: int, port: int, values: dict, out: str, pause_for: float) -> None:
    from tuigpt.run.config import TrainConfig
    from tuigpt.engine.distributed import start_cluster

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    cluster = start_cluster(launch_env(), "gloo", torch.device("cpu"), values["ddp_timeout"])
    trainer = _train_with_fixed_batches(TrainConfig(**values), cluster, pause_for=pause_for if rank == 0 else 0.0)
    torch.save(trainer.raw_model.state_dict(), Path(out) / f"rank{rank}.pt")
    cluster.close()


@pytest.mark.parametrize("accumulation, pause_for", [(4, 6.0), (1, 0.0)],
                         ids=["2 ranks x 2 micro-steps vs 1 x 4", "accumulation 1: 2 ranks x 2 sequences vs 1 x 4"])
def test_two_ranks_stay_equal_and_match_one_process_with_the_same_global_batches(tiny_config, tmp_path,
                                                                                 accumulation: int,
                                                                                 pause_for: float) -> None:
    """The same global batch per step on 2 ranks as on 1 process gives the same weights (float tolerance): with
    accumulation 4 each rank runs 2 of the 4 micro-steps; with accumulation 1 (every shipped config) each rank runs
    half of the one micro-batch. A 6 s pause with ddp_timeout=4 s does not time out."""
    common = dict(gradient_accumulation_steps=accumulation, max_iters=4, eval_interval=100, dropout=0.0)
    values = tiny_config(run_name="two", ddp_timeout=4.0, **common).to_dict()
    torch.multiprocessing.spawn(_spawned_rank, args=(free_port(), values, str(tmp_path), pause_for), nprocs=2,
                                join=True)
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # bitwise equal replicas
    one = _train_with_fixed_batches(tiny_config(run_name="one", **common))
    assert load_checkpoint(Path(values["out_dir"]) / "two" / "last.pt")["world_size"] == 2
    for key, value in one.raw_model.state_dict().items():
        assert torch.allclose(value, rank0[key], atol=2e-6, rtol=1e-5), key
    assert not torch.equal(one.raw_model.state_dict()["transformer.wte.weight"], _untrained(tiny_config))


def _spawned_rank_asking(rank: int, port: int, values: dict, out: str) -> None:
    """A rank of a 2-rank run in which rank 0's front end asks for a checkpoint and a new eval interval while
    the run trains (after iteration 3): every rank must hold the same boundary for them."""
    from tuigpt.engine.distributed import start_cluster
    from tuigpt.engine.trainer import Trainer
    from tuigpt.run.config import TrainConfig
    from tuigpt.run.events import CheckpointWritten, IterationStats

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    cluster = start_cluster(launch_env(), "gloo", torch.device("cpu"), values["ddp_timeout"])
    trainer = Trainer(TrainConfig(**values), cluster=cluster)
    written: list[int] = []

    def front_end(event) -> None:
        if isinstance(event, IterationStats) and event.iter == 3:
            trainer.send(CheckpointNow())
            trainer.send(SetEvalInterval(5))
        if isinstance(event, CheckpointWritten) and event.reason == "command":
            written.append(event.iter)

    if rank == 0:
        trainer.bus.subscribe(front_end)
    trainer.run()
    torch.save({"weights": trainer.raw_model.state_dict(), "written": written, "iter": trainer.iter_num},
               Path(out) / f"rank{rank}.pt")
    cluster.close()


def test_ranks_apply_rank_0s_commands_at_the_same_boundary(tiny_config, tmp_path) -> None:
    """Rank 0's front end asks for a checkpoint and a new eval interval after iteration 3: both ranks apply them at
    the boundary right after (a mismatch would leave one rank in a collective alone until ddp_timeout), and train
    on to the same weights."""
    values = tiny_config(run_name="asking", ddp_timeout=float(TIMEOUT), max_iters=12, eval_interval=100,
                         dropout=0.0).to_dict()
    torch.multiprocessing.spawn(_spawned_rank_asking, args=(free_port(), values, str(tmp_path)), nprocs=2, join=True)
    run = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert run[0]["written"] == [3]
    assert run[0]["iter"] == run[1]["iter"] == 12
    assert all(torch.equal(run[0]["weights"][k], run[1]["weights"][k]) for k in run[0]["weights"])


def _untrained(tiny_config) -> torch.Tensor:
    from tuigpt.engine.model import GPT, ModelArgs

    torch.manual_seed(tiny_config().seed)
    return GPT(ModelArgs(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32)).state_dict()[
        "transformer.wte.weight"]


# ---------------------------------------------------------------- torchrun


def test_torchrun_trains_and_checkpoints_move_between_world_sizes(tiny_yaml: Path, cli_env) -> None:
    """2 ranks (torchrun) -> resume on 1 process -> resume on 2 via --nproc, then SIGTERM to the launcher."""
    run_dir = tiny_yaml.parent / "runs" / "tiny"
    proc = torchrun(tiny_yaml, cli_env, "--max_iters=12", "--eval_interval=6", "--log_interval=3")
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-2000:]
    assert "data parallel: 2 ranks" in out and "tok/s" in out
    assert out.count("tuigpt training") == 1  # rank 1 prints nothing
    records = read_metrics(run_dir / "metrics.jsonl")
    evals = [r["val_loss"] for r in records if r["type"] == "eval"]
    assert evals[-1] < evals[0] - 0.2  # the loss decreases
    cluster = [r for r in records if r["type"] == "cluster"]
    assert [c["iter"] for c in cluster] == [3, 6, 9, 12]
    assert [r["rank"] for r in cluster[-1]["ranks"]] == [0, 1] and cluster[-1]["backend"] == "gloo"
    assert set(ClusterStats.__dataclass_fields__) - {"time"} <= set(cluster[-1])
    saved = load_checkpoint(run_dir / "last.pt")
    assert saved["iter_num"] == 12 and saved["world_size"] == 2 and len(saved["samplers"]) == 2
    assert not any(k.startswith("module.") for k in saved["model"])  # the unwrapped model

    one = subprocess.run([sys.executable, "-m", "tuigpt", str(tiny_yaml), "--headless", "--resume",
                          "--max_iters=15", "--gradient_accumulation_steps=2", f"--ddp_timeout={TIMEOUT}"],
                         capture_output=True, text=True, env=cli_env, cwd=REPO, timeout=90)
    assert one.returncode == 0, one.stderr[-2000:]
    assert "written by 2 rank(s) with 2 saved batch stream(s), this run has 1" in one.stdout
    assert load_checkpoint(run_dir / "last.pt")["world_size"] == 1

    bad = subprocess.run([sys.executable, "-m", "tuigpt", str(tiny_yaml), "--nproc", "2", "--resume", "--batch_size=1",
                          "--max_iters=30"],
                         capture_output=True, text=True, env=cli_env, cwd=REPO, timeout=60)
    assert bad.returncode == 2 and "cannot be shared evenly by 2 ranks: use --batch_size=2" in bad.stderr
    assert "OMP_NUM_THREADS" not in bad.stderr  # refused before launching anything

    # the README's `--nproc 2` with the config's accumulation of 1: the ranks share the one micro-batch
    proc = subprocess.Popen([sys.executable, "-m", "tuigpt", str(tiny_yaml), "--nproc", "2", "--headless",
                             "--resume", "--max_iters=100000", "--eval_interval=100000", "--log_interval=1",
                             f"--ddp_timeout={TIMEOUT}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env, cwd=REPO,
                            stdin=subprocess.DEVNULL)
    lines = wait_for_line(proc, r"^iter 20/", timeout=90)
    assert any("rank(s) 1 had no saved batch-sampler state" in line for line in lines)
    first = next(line for line in lines if line.startswith("tuigpt resuming"))
    assert "| 128 tokens/iter |" in first  # batch_size 4 x block_size 32, as on one process
    assert any("each rank runs 1 micro-step(s) of 2 x 32 tokens per iteration (batch_size 4 x "
               "gradient_accumulation_steps 1 shared by 2 ranks as 1 x 2 each: the same 128 tokens per iteration"
               in line for line in lines), lines[:6]
    children = ranks_of(proc)
    assert sorted(children) == [0, 1]
    proc.send_signal(signal.SIGTERM)  # the launcher (--nproc replaced itself with torchrun)
    out, err = proc.communicate(timeout=60)
    stops = re.findall(r"checkpoint \S+last\.pt \(iter (\d+), (\w+)", out)
    assert len(stops) == 1 and stops[0][1] == "stop", out[-1000:]  # one checkpoint, by rank 0
    assert load_checkpoint(run_dir / "last.pt")["iter_num"] == int(stops[0][0])
    assert "tuigpt rank 1" not in err
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children.values())


def test_a_killed_rank_ends_the_run_with_a_message_and_rank_0_saves(tiny_yaml: Path, cli_env) -> None:
    run_dir = tiny_yaml.parent / "runs" / "tiny"
    proc = torchrun(tiny_yaml, cli_env, "--max_iters=100000", "--eval_interval=100000", "--log_interval=1")
    wait_for_line(proc, r"^iter 10/", timeout=90)
    ranks = ranks_of(proc)
    killed_at = time.monotonic()
    ranks[1].kill()
    out, err = proc.communicate(timeout=TIMEOUT + 30)
    assert time.monotonic() - killed_at < TIMEOUT
    assert proc.returncode != 0
    assert not ranks[0].is_running() or ranks[0].status() == psutil.STATUS_ZOMBIE
    message = re.search(r"tuigpt: rank 0 stopped: rank 0 lost the group .*last\.pt at iteration (\d+) saved", err)
    assert message, err[-2000:]
    assert "Traceback (most recent call last):\n  File \"/work" not in err.split("torch.distributed.elastic")[0]
    assert load_checkpoint(run_dir / "last.pt")["iter_num"] == int(message.group(1))
    assert re.search(r"checkpoint \S+last\.pt \(iter \d+, failure", out)
