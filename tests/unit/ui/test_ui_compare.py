"""Pilot test of --compare: another run's loss curves on the chart, and the x axis key."""

from __future__ import annotations

import json
from pathlib import Path

from support.fake_run import TOKENS_PER_ITER, FakeController, demo_script, fake_loss
from test_ui_app import make_app, settle

from tuigpt.ui.app import TuiGptApp
from tuigpt.ui.widgets.loss import LossChart


def iter_line(i: int, loss: float) -> str:
    """A metrics.jsonl iteration record, as the writer makes them."""
    return json.dumps({"type": "iter", "iter": i, "loss": loss, "lr": 1e-3, "ms_per_iter": 240.0,
                       "tokens_per_sec": TOKENS_PER_ITER / 0.24, "mfu": None, "tokens_seen": (i + 1) * TOKENS_PER_ITER,
                       "train_seconds": i * 0.24, "time": 1_700_000_000.0 + i * 0.24})


def other_run(tmp_path: Path) -> Path:
    """A slower run of the same model: half the tokens per second, a higher loss."""
    run = tmp_path / "laptop-cpu"
    run.mkdir()
    lines = [iter_line(i, fake_loss(i) + 0.3) for i in range(600)]
    lines += [json.dumps({"type": "eval", "iter": i, "train_loss": fake_loss(i) + 0.2, "val_loss": fake_loss(i) + 0.35,
                          "best_val_loss": 0.0, "is_best": False, "seconds": 1.0, "time": 1_700_000_000.0})
              for i in range(0, 600, 100)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_compare_overlay_and_x_axis_cycle(tmp_path: Path) -> None:
    import asyncio

    controller = FakeController(demo_script(iters=300))
    base = make_app(controller)
    app = TuiGptApp(controller, config_path=base.config_path, clock=base.clock, compare=other_run(tmp_path))

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(100):
                await settle(pilot)
                if app.compare is not None:
                    break
            assert app.compare is not None and app.compare.name == "laptop-cpu"
            app.redraw()
            chart = app.query_one(LossChart)
            assert chart.drawn_compare > 600 // 2, "the other run's EMA and val points are drawn"
            assert "laptop-cpu" in chart.legend.plain
            assert chart.drawn_range == (0, 299)
            titles = []
            for _ in range(3):
                await pilot.press("x")
                await settle(pilot)
                titles.append(str(chart.border_title))
                assert chart.drawn_compare > 0
            assert "x: tokens seen" in titles[0] and "x: wall-clock time" in titles[1] and "x:" not in titles[2]
            assert app.x_axis == "iter"
            await pilot.press("z")  # zoomed: the other run is clipped to this run's range
            await settle(pilot)
            assert 0 < chart.drawn_compare

    asyncio.run(main())


def test_compare_follows_a_run_that_is_still_training(tmp_path: Path) -> None:
    """The compared run's metrics.jsonl grows: the overlay is re-read, not frozen at start."""
    import asyncio

    run = other_run(tmp_path)
    controller = FakeController(demo_script(iters=300))
    base = make_app(controller)
    app = TuiGptApp(controller, config_path=base.config_path, clock=base.clock, compare=run)

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(100):
                await settle(pilot)
                if app.compare is not None:
                    break
            assert max(p[0] for p in app.compare.points) == 599
            with open(run / "metrics.jsonl", "a") as f:
                for i in range(600, 900):
                    f.write(iter_line(i, 1.0) + "\n")
            app._reload_compare_if_grown()  # what the 10 s timer does
            for _ in range(100):
                await settle(pilot)
                if max(p[0] for p in app.compare.points) == 899:
                    break
            assert max(p[0] for p in app.compare.points) == 899

    asyncio.run(main())


def test_runs_of_two_tokenizers_are_compared_in_bits_per_byte(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """A char-level run and a GPT-2-BPE run of the same text: their losses per token differ by their token sizes,
    so the chart draws both in bits per byte, each eval at the bits per byte it measured."""
    import asyncio

    import yaml

    from conftest import TINY
    from support.corpus import shakespeare
    from tuigpt.cli import main as cli
    from tuigpt.control.follower import WatchController
    from tuigpt.run.metrics_log import read_metrics

    runs = tmp_path / "runs"
    for tokenizer in ("char", "gpt2"):
        config = tmp_path / f"{tokenizer}.yaml"
        config.write_text(yaml.safe_dump({**TINY, "dataset": "text", "tokenizer": tokenizer, "run_name": tokenizer,
                                          "data_path": str(shakespeare()), "out_dir": str(runs)}))
        assert cli.main([str(config), "--headless"]) == 0
    capsys.readouterr()
    evals = {name: [r for r in read_metrics(runs / name / "metrics.jsonl") if r["type"] == "eval"]
             for name in ("char", "gpt2")}
    assert all(e["val_bpb"] is not None for es in evals.values() for e in es)
    controller = WatchController(runs / "char")
    app = TuiGptApp(controller, watching=True, compare=runs / "gpt2")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            chart = app.query_one(LossChart)
            for _ in range(200):
                await settle(pilot)
                if app.compare is not None and chart.data is not None and chart.data.evals_val[1] and \
                        len(chart.data.evals_val[1]) == len(evals["char"]):
                    break
            assert chart.units == "bpb"
            assert str(chart.border_title).startswith("bits per byte (tokenizers differ: char vs gpt2)")
            assert chart.data.evals_val[1] == [e["val_bpb"] for e in evals["char"]]
            assert chart.data.compare_evals[1] == [e["val_bpb"] for e in evals["gpt2"]]
            assert " bpb @" in chart.legend.plain  # the best val, in bits per byte too

    try:
        asyncio.run(main())
    finally:
        controller.close()
    char_loss, gpt2_loss = evals["char"][-1]["val_loss"], evals["gpt2"][-1]["val_loss"]
    assert gpt2_loss > 2 * char_loss, "per token, a BPE run's loss is on another scale"
