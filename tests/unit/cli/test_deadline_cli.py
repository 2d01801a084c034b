"""--time and --until on the command line: the command line's end replaces the config's, and anything unreadable,
in the past or doubled is one line and exit 2 before any set-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tuigpt.cli.main import main


@pytest.fixture
def config(tmp_path: Path, shakespeare: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(dict(data_path=str(shakespeare), out_dir=str(tmp_path / "runs"), n_layer=1,
                                        n_head=1, n_embd=16, block_size=16, batch_size=2, dtype="float32",
                                        compile=False, device="cpu", deadline="07:00")))
    return path


@pytest.mark.parametrize("args, says", [
    (["--time", "8x"], "error: --time '8x' is not a duration: write 8h, 90m, 45s"),
    (["--time=8"], "error: --time '8' is not a duration (add a unit: s, m, h or d)"),
    (["--time"], "error: --time needs a value, e.g. --time 8h"),
    (["--until", "2020-01-01T07:00"], "error: deadline '2020-01-01T07:00' is in the past"),
    (["--until", "25:00"], "error: deadline '25:00' is not a time of day"),
    (["--time", "1h", "--until", "07:00"], "error: --time and --until both given"),
    (["--time", "1h", "--deadline=07:00"], "error: --time and --deadline both given"),
    (["--time", "400d"], "error: --time '400d' is longer than a year"),
])
def test_a_bad_end_is_one_line_and_exit_2_before_the_set_up(config: Path, args: list[str], says: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(config), "--headless", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(says) and err.count("\n") == 1, err
    assert not (config.parent / "runs").exists()  # nothing made


def test_the_command_line_end_replaces_the_configs(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def train(cfg, **_kw) -> int:  # noqa: ANN001, ANN003
        seen["config"] = cfg
        return 0

    monkeypatch.setattr("tuigpt.host.wiring.train", train)
    assert main([str(config), "--headless", "--time", "90m"]) == 0
    cfg = seen["config"]
    assert cfg.time_budget == "90m" and cfg.deadline is None and cfg.max_iters is None
    assert main([str(config), "--headless", "--until=06:30", "--max_iters=500"]) == 0
    cfg = seen["config"]
    assert cfg.deadline == "06:30" and cfg.time_budget is None and cfg.max_iters == 500  # a cap
