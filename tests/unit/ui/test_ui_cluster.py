"""Pilot tests of the Cluster pane: absent for one process, per-rank timings and the straggler for several."""

from __future__ import annotations

from support.fake_run import FakeController, demo_script
from test_ui_app import drive, settle, text_of
from textual.widgets import Tabs

from tuigpt.run.events import ClusterStats
from tuigpt.ui.widgets.cluster import ClusterPane


def cluster_stats(straggler: int | None = 1) -> ClusterStats:
    """Two laptops and a throttled third: rank 1's data + compute is 1.4x rank 0's."""
    ranks = [
        {"rank": 0, "host": "laptop-a", "ms_per_iter": 410.0, "data_ms": 3.1, "compute_ms": 280.0, "comm_ms": 95.0, "backward_ms": 180.0},
        {"rank": 1, "host": "laptop-b-with-a-long-name", "ms_per_iter": 412.0, "data_ms": 4.0, "compute_ms": 392.0, "comm_ms": 12.0, "backward_ms": 250.0},
        {"rank": 2, "host": "laptop-c", "ms_per_iter": 409.0, "data_ms": 2.9, "compute_ms": 285.0, "comm_ms": 90.0, "backward_ms": 182.0},
    ]
    return ClusterStats(iter=300, ranks=ranks, slowest_over_fastest=1.4, comm_over_compute=0.21, straggler=straggler,
                        backend="gloo", time=1_700_000_100.0)


def test_single_process_run_has_no_cluster_pane() -> None:
    async def body(app, pilot, controller) -> None:  # noqa: ANN001
        cluster = app.query_one(ClusterPane)
        assert not cluster.display or cluster.region.height == 0
        assert "tab-cluster" not in [t.id for t in app.query_one(Tabs).query("Tab")]

    drive(body)


def test_cluster_pane_shows_ranks_ratios_and_straggler() -> None:
    async def body(app, pilot, controller) -> None:  # noqa: ANN001
        controller.emit(cluster_stats(straggler=1))
        await settle(pilot)
        cluster = app.query_one(ClusterPane)
        assert cluster.region.height > 0, "the pane appears with the first timings"
        shown = text_of(cluster)
        assert "laptop-b…" in ClusterPane.describe(cluster_stats(), width=38).plain  # a long host name, cut to fit
        for needle in ("laptop-a", "laptop-b-with", "laptop-c", "410.0", "392.0", "95.0", "1.40×", "0.21", "straggler: rank 1"):
            assert needle in shown, (needle, shown)
        described = ClusterPane.describe(cluster_stats(straggler=1))
        highlighted = [described.plain[s.start:s.end] for s in described.spans if "on yellow" in str(s.style)]
        assert len(highlighted) == 1 and highlighted[0].startswith(" 1 laptop-b"), highlighted
        assert cluster.border_title == "cluster · 3 ranks · gloo"
        # why its ms/it differ from the Speed pane's, on screen (the demo run logs every 10 iterations)
        assert "ms/it: each rank's mean over the last 10 steps, all-reduce waits included" in shown
        assert "rank 0 · last 50 steps" in str(app.query_one("#speed").border_title)
        # the GPU pane stays on screen below it
        assert app.query_one("#gpu").region.height > 0

        controller.emit(cluster_stats(straggler=None))  # balanced again: no highlight
        await settle(pilot)
        assert "straggler" not in text_of(cluster)
        assert not any("on yellow" in str(s.style) for s in ClusterPane.describe(cluster_stats(straggler=None)).spans)

    drive(body, FakeController(demo_script(iters=300)))


def test_cluster_pane_is_a_tab_in_the_compact_layout() -> None:
    async def body(app, pilot, controller) -> None:  # noqa: ANN001
        controller.emit(cluster_stats())
        await settle(pilot)
        cluster = app.query_one(ClusterPane)
        assert cluster.region.height == 0
        for _ in range(6):  # events → sample → speed → mfu → cpu → gpu → cluster
            await pilot.press("n")
        await settle(pilot)
        assert app.query_one(Tabs).active == "tab-cluster"
        assert cluster.region.height > 0
        assert "straggler: rank 1" in text_of(cluster)

    drive(body, size=(80, 24))
