"""The tuigpt command as a user runs it: exit codes, one-line errors, train → sample → resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO  # noqa: E402


def tuigpt(*args: str, env: dict, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuigpt", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or REPO, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0]


def test_help_documents_commands_and_exit_codes(cli_env) -> None:
    result = tuigpt("--help", env=cli_env)
    assert result.returncode == 0
    for word in ("--headless", "--resume", "sample", "info", "calibrate", "exit codes"):
        assert word in result.stdout
    assert tuigpt(env=cli_env).returncode == 2


def _missing_cuda_device() -> tuple[list[str], list[str]]:
    """A CUDA device this machine does not have: any on a CPU-only torch, one past the last on a GPU machine."""
    import torch

    if not torch.cuda.is_available():
        return ["{cfg}", "--device=cuda"], ["device=cuda", "CUDA is not available"]
    count = torch.cuda.device_count()
    return ["{cfg}", f"--device=cuda:{count}"], [f"device=cuda:{count}", f"this machine has {count} CUDA device(s)"]


@pytest.mark.parametrize("args, needles", [
    (["missing.yaml"], ["missing.yaml", "does not exist"]),
    (["{cfg}", "--n_layers=3"], ["n_layers", "did you mean n_layer"]),
    (["{cfg}", "--batch_size=big"], ["--batch_size", "expected integer"]),
    (["{cfg}", "--n_embd=30", "--n_head=4"], ["n_embd 30 is not divisible by n_head 4"]),
    (["{cfg}", "--min_lr=1", "--learning_rate=0.1"], ["min_lr 1 is above learning_rate"]),
    _missing_cuda_device(),
    (["{cfg}", "--dtype=float16"], ["dtype=float16", "CPU"]),
    (["{cfg}", "--block_size=1000000"], ["block_size=1000000 is too large"]),
    (["{cfg}", "--block_size=2000000"], ["block_size=2000000", "from 1 to 1,048,576"]),
    (["{cfg}", "--data_path=/no/such/file.txt"], ["/no/such/file.txt"]),
    (["{cfg}", "--resume"], ["nothing to resume"]),
    (["{cfg}", "stray"], ["stray"]),
    (["sample", "nothing.pt"], ["nothing.pt", "does not exist"]),
    (["sample", "README.md"], ["README.md is not a checkpoint"]),
    (["{cfg}", "--lr=0.1"], ["'lr'", "did you mean learning_rate"]),
    (["{cfg}", "--nproc", "2", "--batch_size=1"], ["cannot be shared evenly by 2 ranks", "--batch_size=2"]),
    (["sample"], ["checkpoint"]),
])
def test_bad_input_is_one_line_and_exit_2(cli_env, tiny_yaml: Path, args: list[str], needles: list[str]) -> None:
    args = [a.replace("{cfg}", str(tiny_yaml)) for a in args]
    assert_one_line_error(tuigpt(*args, env=cli_env), *needles)


def test_offline_with_nothing_cached_says_where_to_put_the_file(cli_env, tiny_yaml: Path, tmp_path: Path) -> None:
    env = dict(cli_env, TUIGPT_CACHE_DIR=str(tmp_path / "empty-cache"), TUIGPT_SHAKESPEARE_URL="http://127.0.0.1:9/x")
    result = tuigpt(str(tiny_yaml), "--data_path=none", "--headless", env=env)
    assert_one_line_error(result, "could not download tiny Shakespeare", "data_path=FILE",
                          str(tmp_path / "empty-cache"))


def test_train_sample_and_resume(cli_env, tiny_yaml: Path) -> None:
    run_dir = tiny_yaml.parent / "runs" / "tiny"
    first = tuigpt(str(tiny_yaml), "--headless", "--max_iters=8", "--eval_interval=4", env=cli_env)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "tuigpt training tiny" in out.splitlines()[0]
    assert "iter 8/8 | loss" in out and "ms/it" in out and "tok/s" in out and "MFU" in out
    assert "eval iter 4 | train loss" in out
    assert out.strip().splitlines()[-2].startswith("done at iter 8")
    assert out.strip().splitlines()[-1].startswith("!!! ALERT [done] tiny: finished at iter 8")
    assert (run_dir / "last.pt").exists() and (run_dir / "best.pt").exists()

    sample = tuigpt("sample", str(run_dir / "best.pt"), "--prompt", "ROMEO:", "--max_new_tokens=40", env=cli_env)
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("ROMEO:") and len(sample.stdout.rstrip("\n")) >= 40
    greedy = tuigpt("sample", str(run_dir / "best.pt"), "--prompt", "ROMEO:", "--max_new_tokens=30",
                    "--temperature", "0", "--num_samples", "2", env=cli_env)
    assert greedy.returncode == 0, greedy.stderr
    first, second = greedy.stdout.split("---------------\n")
    assert first == second  # temperature 0 is greedy: no randomness left between the two samples

    again = tuigpt(str(tiny_yaml), "--headless", "--max_iters=8", env=cli_env)
    assert_one_line_error(again, "already holds a run", "--resume")

    resumed = tuigpt(str(tiny_yaml), "--headless", "--resume", "--max_iters=12", "--eval_interval=4", env=cli_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "tuigpt resuming tiny" in resumed.stdout and "iter 8/12" in resumed.stdout.splitlines()[0]
    assert "iter 9/12" in resumed.stdout and "iter 1/" not in resumed.stdout
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if r["type"] == "iter"] == list(range(1, 13))
    assert [r["type"] for r in records].count("start") == 2


@pytest.mark.slow
def test_readme_smoke_run_learns(cli_env, tmp_path: Path, shakespeare: Path) -> None:
    """The README's first run: the tiny config for 300 iterations gets val loss below 2.6."""
    result = tuigpt(str(REPO / "configs" / "train_shakespeare_char_tiny.yaml"), "--headless", "--max_iters=300",
                    "--eval_interval=100", f"--data_path={shakespeare}", f"--out_dir={tmp_path}", env=cli_env,
                    timeout=540)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "shakespeare_char_tiny" / "metrics.jsonl").open()]
    evals = [r for r in records if r["type"] == "eval"]
    assert [e["iter"] for e in evals] == [0, 100, 200, 300]
    assert evals[-1]["val_loss"] < 2.6
    assert evals[0]["val_loss"] > 4.0  # it really learned, from the untrained ~ln(65)
