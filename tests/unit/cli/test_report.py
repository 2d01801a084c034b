"""`tuigpt report RUN`: the morning's Markdown with PNG charts of the curves, every eval, where the time went and
the samples eval by eval (issue 27), from a real run that was resumed once."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from tuigpt.cli.main import main
from tuigpt.engine.trainer import Trainer
from tuigpt.run.metrics_log import MetricsWriter
from tuigpt.ui import png_chart
from tuigpt.ui.png_chart import Series, line_chart, nice_ticks, tick_text


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB PNG without filters (what png_chart writes) as an array; fails on anything else."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2) and b"IEND" in chunks
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(height, width * 3 + 1)
    assert not raw[:, 0].any()  # filter type 0 on every row
    return raw[:, 1:].reshape(height, width, 3)


def pixels_of(image: np.ndarray, color: tuple[int, int, int]) -> int:
    return int(np.all(image == np.array(color, dtype=np.uint8), axis=2).sum())


def train(config, resume: bool = False) -> Trainer:  # noqa: ANN001
    trainer = Trainer(config, resume=resume)
    writer = MetricsWriter(trainer.run_dir.metrics, config.log_interval, resume_at=trainer.iter_num if resume else None)
    trainer.bus.subscribe(writer)
    try:
        trainer.run()
    finally:
        writer.close()
    return trainer


@pytest.fixture
def resumed_run(tmp_path: Path, shakespeare: Path) -> Path:
    from conftest import TINY
    from tuigpt.run.config import TrainConfig

    out = tmp_path / "runs"
    values = dict(TINY, out_dir=str(out), data_path=str(shakespeare), run_name="night", max_iters=40,
                  eval_interval=10, sample_every_eval=True, sample_max_new_tokens=24)
    train(TrainConfig(**values))
    train(TrainConfig(**{**values, "max_iters": 60}), resume=True)
    return out / "night"


def test_the_report_has_the_curves_the_evals_the_time_and_the_samples(resumed_run: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(resumed_run)]) == 0
    assert "wrote" in capsys.readouterr().out
    folder = resumed_run / "report"
    text = (folder / "report.md").read_text()
    assert text.startswith("# night\n")
    assert "| state | done at iteration 60 of 60 |" in text
    assert re.search(r"\| best val loss \| \d\.\d{4} at iteration \d+ \(`.*best\.pt`\) \|", text)
    for picture in ("loss.png", "lr.png", "speed.png"):
        assert f"]({picture})" in text
        image = decode_png((folder / picture).read_bytes())
        assert image.shape == (360, 960, 3)
    loss = decode_png((folder / "loss.png").read_bytes())
    from tuigpt.cli.report import TRAIN_EMA, TRAIN_RAW, VAL

    assert pixels_of(loss, TRAIN_RAW) > 500 and pixels_of(loss, TRAIN_EMA) > 500 and pixels_of(loss, VAL) > 200
    evals = re.findall(r"^\| (\d+) \| \d\.\d{4} \| \d\.\d{4} \|", text, re.M)
    assert [int(i) for i in evals] == list(range(0, 61, 10))  # every eval, both sessions
    sessions = re.findall(r"^\| (\d)( \(resumed\))? \| \d{4}-\d\d-\d\d \d\d:\d\d \|", text, re.M)
    assert sessions == [("1", ""), ("2", " (resumed)")]
    assert "not running |" in text and "| all |" in text  # the gap between the sessions, and the totals
    assert re.search(r"Training \d+% of the wall-clock time", text)
    samples = re.findall(r"^### iteration (\d+), val loss \d\.\d{4}$", text, re.M)
    assert [int(i) for i in samples] == list(range(0, 61, 10))  # one sample an eval, with its val loss
    assert "from the same prompt and seed: only the model changes" in text


def test_a_planned_run_is_reported_against_its_plan(tmp_path: Path, shakespeare: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The default config ends at a time: the report said "done at iteration 4,740 of 0" and nothing of its
    budget, how it ended against it, or stable.pt."""
    import time

    from conftest import TINY
    from tuigpt.run.config import TrainConfig

    monkeypatch.setattr("tuigpt.engine.planner.process_started", lambda: (time.time(), time.monotonic()))
    values = dict(TINY, out_dir=str(tmp_path / "runs"), data_path=str(shakespeare), run_name="budget",
                  max_iters=None, time_budget="4s", eval_interval=40, log_interval=5, warmup_iters=5)
    trainer = train(TrainConfig(**values))
    assert main(["report", str(trainer.run_dir.path)]) == 0
    text = (trainer.run_dir.path / "report" / "report.md").read_text()
    last = trainer.iter_num
    assert f"| state | done at iteration {last:,} of {last:,} |" in text
    planned = re.search(r"^\| planned \| --time 4s: ended .*, (on time|\S+ (late|early)) \(budget .*\); cooldown from "
                        r"iteration [\d,]+; `.*stable\.pt` is the model where it began", text, re.M)
    assert planned, text[:1500]


def test_a_missing_run_or_a_file_as_out_is_one_line_and_exit_2(tmp_path: Path, resumed_run: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    (tmp_path / "file").write_text("mine\n")
    assert main(["report", str(resumed_run), "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert (tmp_path / "file").read_text() == "mine\n"  # nothing overwritten


def test_chart_ticks_are_round_and_short() -> None:
    assert nice_ticks(1.4, 4.3) == [1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    assert [tick_text(v, 500, 2000) for v in nice_ticks(0, 2000, 5)] == ["0", "0.5k", "1.0k", "1.5k", "2.0k"]
    assert [tick_text(v, 2e-4, 1e-3) for v in (0.0, 4e-4, 1e-3)] == ["0", "4e-4", "1e-3"]
    assert set("".join(tick_text(v, s, v) for v, s in ((1.5e6, 5e5), (-2.5, 0.5), (3e-5, 1e-5)))) <= set(png_chart._FONT)


def test_a_chart_draws_its_series_inside_the_plot() -> None:
    image = decode_png(line_chart([Series([0, 10], [0, 1], (255, 0, 0)), Series([5], [0.5], (0, 0, 255), "dots")],
                                  width=200, height=120))
    red, blue = pixels_of(image, (255, 0, 0)), pixels_of(image, (0, 0, 255))
    assert red > 150 and 20 < blue < 40  # a 2-pixel diagonal, a dot of radius 3
    ys, xs = np.nonzero(np.all(image == (255, 0, 0), axis=2))
    assert xs[ys.argmax()] < xs[ys.argmin()]  # rising to the right: y grows upwards
