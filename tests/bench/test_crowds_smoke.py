"""Smoke test of the crowd trials (issue 10): each one tiny, end to end,
against the production launcher. It proves the harness measures what the
report says — answers by status class, the server's PostgreSQL
connections, CPU per connect, the storm's per-second latency, finals at
every viewer — never a timing: timings are ``make bench``'s business.
"""

from __future__ import annotations

import os

import pytest

from bench import report
from bench.crowds import trial_connect_cost, trial_connect_storm, trial_rest_burst, trial_watched
from bench.loadgen import Stream, Totals, finals_summary, per_second
from bench.trials import BenchContext
from tests.servers import current_database_url, requires_shared_database

_TIMING = {"warmup": 0.5, "duration": 2.0, "drain": 0.7, "server_core": None, "loadgen_core": None}

needs_servers = [
    requires_shared_database(),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the servers need Redis (REDIS_URL)"),
]


@pytest.fixture
def crowd_ctx(transactional_db, tmp_path) -> BenchContext:
    from django.conf import settings

    return BenchContext(
        database_url=current_database_url(),
        redis_url=os.environ.get("REDIS_URL", ""),
        secret_key=settings.SECRET_KEY,
        work_dir=tmp_path / "bench",
        channel_prefix="voiceai-bench-smoke",
        **_TIMING,
    )


def test_it_finds_the_second_from_which_p99_holds_counting_frames_without_reply_as_slow():
    fast, slow = 0.005, 0.2
    frames = [(0.5, slow)] * 50 + [(1.5, fast)] * 98 + [(1.6, None)] * 2 + [(2.5, fast)] * 100 + [(3.5, fast)] * 100
    rows, holds_from = per_second(frames, 93.0)
    assert [r["second"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["p99_ms"] == 200.0
    assert rows[1]["missing"] == 2
    assert rows[1]["p99_ms"] is None  # frames without a reply are the p99
    assert holds_from == 2
    _, never = per_second([(0.5, fast), (1.5, slow)], 93.0)
    assert never is None


def test_each_second_carries_the_generators_own_worst_lateness():
    frames = [(0.5, 0.005), (1.5, 0.005), (2.5, 0.005)]
    rows, _ = per_second(frames, 93.0, lags=[(0.1, 0.001), (0.9, 0.004), (1.2, 0.150)])
    assert [r["gen_lag_ms"] for r in rows] == [4.0, 150.0, None]


async def test_it_counts_missing_duplicate_and_out_of_order_finals_per_viewer():
    # async: a Stream belongs to a running loop.
    totals = Totals()
    clean, faulty = Stream({}, totals), Stream({}, totals)
    for s in (clean, faulty):
        s.viewer = object()
        s.prod_finals = [3200, 6400, 9600, 12800]
        s.stored_finals = 4
    clean.view_finals = [3200, 6400, 9600, 12800]
    clean.viewer_ended = True
    clean.view_seqs = [1, 2, 3, 4, 5]
    faulty.view_finals = [3200, 9600, 6400, 6400]  # 12800 missing, 6400 twice, 6400 after 9600
    faulty.view_seqs = [1, 2, 5, 4]
    summary = finals_summary([clean, faulty])
    assert summary["stored"] == summary["producer"] == 8
    assert summary["viewer"] == 8
    assert (summary["missing"], summary["duplicate"], summary["out_of_order"]) == (1, 1, 1)
    assert summary["viewers_with_faults"] == 1
    assert summary["viewers_without_end"] == 1
    assert (summary["seq_viewers"], summary["seq_gaps"], summary["seq_regressions"]) == (2, 2, 1)


@needs_servers[0]
@needs_servers[1]
def test_it_bursts_rest_creates_and_counts_the_servers_postgresql_connections(crowd_ctx):
    result = trial_rest_burst(crowd_ctx, requests=6, threads=2)

    assert result.get("crashed") is None
    assert result["classes"] == {"2xx": 6}
    assert result["created"] == 6
    # The sampler saw the server's own connections, in pg_stat_activity too.
    assert result["pg"]["samples"] > 0
    assert result["pg"]["max_sockets"] >= 1
    assert result["pg"]["max_backends"] >= 1
    assert "REST burst: 6" in report.crowds_markdown({"crowds": {"rest_burst": result}})


@needs_servers[0]
@needs_servers[1]
def test_it_measures_server_cpu_per_connect(crowd_ctx):
    result = trial_connect_cost(crowd_ctx, 3, warm=1)

    assert result.get("crashed") is None
    assert result["loadgen"]["begun"] == 3
    assert result["loadgen"]["errors"] == {}
    assert result["cpu_ms_per_connect"] is not None


@needs_servers[0]
@needs_servers[1]
def test_it_storms_a_server_with_producers_that_stream_from_begin(crowd_ctx):
    result = trial_connect_storm(crowd_ctx, 3, seconds=3)

    lg = result["loadgen"]
    assert result.get("crashed") is None
    assert lg["begun"] == 3
    assert lg["errors"] == {}
    assert lg["all_connected_s"] is not None
    assert lg["frames_sent"] > 0
    assert lg["missing_transcripts"] == 0
    assert sum(row["frames"] for row in lg["per_second"]) == lg["frames_sent"]
    assert "connect storm" in report.crowds_markdown({"crowds": {"connect_storm": result}})


@needs_servers[0]
@needs_servers[1]
def test_it_delivers_every_final_to_every_viewer_on_another_process_exactly_once(crowd_ctx):
    result = trial_watched(crowd_ctx, 2)

    lg = result["loadgen"]
    finals = lg["finals"]
    assert result.get("crashed") is None
    assert lg["errors"] == {}, lg["errors"]
    assert lg["viewer"]["count"] > 0
    # ~3 s of audio per session with a final per second of it, all stored,
    # all at the producer and all at the viewer, once each, in order.
    assert finals["stored"] >= 4
    assert finals["producer"] == finals["viewer"] == finals["stored"]
    assert finals["missing"] == finals["duplicate"] == finals["out_of_order"] == finals["unexpected"] == 0
    assert finals["viewers_without_end"] == 0
    assert result["targets"]["finals_exactly_once_in_order"]


def test_it_rewrites_only_the_crowd_block_of_the_docs(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        f"# Benchmarks\n\n{report.BEGIN}\ncapacity tables\n{report.END}\n\n## Crowds\n\nby hand\n\n"
        f"{report.CROWDS_BEGIN}\nold crowds\n{report.CROWDS_END}\n\nreading\n"
    )
    report.write_crowds_docs(doc, "new crowds")
    text = doc.read_text()
    assert "old crowds" not in text
    assert f"{report.CROWDS_BEGIN}\nnew crowds\n{report.CROWDS_END}" in text
    assert "capacity tables" in text
    assert "by hand" in text
    assert text.rstrip().endswith("reading")
