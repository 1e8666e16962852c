"""Smoke test of the benchmark harness (issue 6): a few streams for a few
seconds, end to end, against the plain baseline server and against the
project (a producer process and a viewer process through Redis).

It proves the harness connects, streams, times every frame to its
Transcript, samples the servers and Redis and renders the report. It never
asserts a timing: the machine is shared and timings are the benchmark's
business (``make bench``), not the suite's.
"""

from __future__ import annotations

import os

import pytest

from bench import report
from bench.loadgen import FRAME_BYTES, _int_after
from bench.profile_summary import summarise_collapsed
from bench.run import capacity_search
from bench.trials import BenchContext, trial_baseline, trial_platform
from tests.servers import current_database_url, requires_shared_database

# Unpinned and short: a smoke run, not a measurement.
_TIMING = {"warmup": 0.5, "duration": 2.0, "drain": 0.7, "server_core": None, "loadgen_core": None}


@pytest.fixture
def bench_ctx(tmp_path) -> BenchContext:
    from django.conf import settings

    return BenchContext(
        database_url=os.environ.get("DATABASE_URL", ""),
        redis_url=os.environ.get("REDIS_URL", ""),
        secret_key=settings.SECRET_KEY,
        work_dir=tmp_path / "bench",
        channel_prefix="voiceai-bench-smoke",
        **_TIMING,
    )


def test_it_reads_offsets_and_acks_without_decoding_json():
    assert _int_after(b'{"type":"Transcript","text":"32000","x":1}', b'"text":') == 32000
    assert _int_after(b'{"type": "Transcript", "text": "6400"}', b'"text":') == 6400
    assert _int_after(b'{"type":"Ack","audio_bytes_durable":96000}', b'"audio_bytes_durable":') == 96000
    assert _int_after(b'{"type":"Transcript","text":"hello"}', b'"text":') is None
    assert _int_after(b'{"type":"Ack"}', b'"audio_bytes_durable":') is None


def test_it_finds_capacity_as_the_largest_passing_level_with_one_bisection():
    ran = []

    def run_one(n):
        ran.append(n)
        return {"pass": n <= 600, "n": n, "trial": "t", "server": "s", "why": "errors", "loadgen": None}

    result = capacity_search(run_one, [250, 500, 750, 1000], log=lambda _msg: None)
    assert ran == [250, 500, 750, 600]
    assert result["capacity"] == 600
    assert result["first_fail"] == 750


def test_it_reruns_a_level_that_failed_on_latency_alone_once():
    ran = []

    def run_one(n):
        ran.append(n)
        # One stall spoils the first try of 500; 750 is really too much.
        ok = n <= 600 and not (n == 500 and ran.count(n) == 1)
        why = "ok" if ok else "p99 140.0 ms"
        return {"pass": ok, "n": n, "trial": "t", "server": "s", "why": why, "loadgen": {}}

    result = capacity_search(run_one, [250, 500, 750], log=lambda _msg: None)
    assert ran == [250, 500, 500, 750, 750, 600]
    assert result["capacity"] == 600
    assert result["first_fail"] == 750


def test_it_summarises_a_collapsed_profile_by_function_and_package():
    text = "\n".join(
        [
            "run (uvicorn/main.py:1);on_audio (/work/main/transcription/stream.py:350) 30",
            "run (uvicorn/main.py:1);dumps (/usr/lib/python3.11/json/__init__.py:231) 10",
            "_worker (concurrent/futures/thread.py:83);close_old_connections (django/db/__init__.py:61) 60",
        ]
    )
    summary = summarise_collapsed(text)
    assert summary["samples"] == 100
    assert summary["self_by_function"][0] == ("close_old_connections (django/db/__init__.py)", 60.0)
    assert dict(summary["self_by_package"])["project: transcription"] == 30.0
    assert summary["hot_spots_inclusive_pct"]["close_old_connections"] == 60.0
    assert summary["hot_spots_inclusive_pct"]["dumps"] == 10.0


def test_it_replaces_only_the_generated_block_of_the_docs(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nhand-written intro\n\n{report.BEGIN}\nold table\n{report.END}\n\nreading\n")
    report.write_docs(doc, "new table")
    text = doc.read_text()
    assert "old table" not in text
    assert "new table" in text
    assert text.startswith("# Benchmarks\n\nhand-written intro")
    assert text.rstrip().endswith("reading")


def test_it_measures_the_baseline_server_end_to_end(bench_ctx):
    result = trial_baseline(bench_ctx, 4)

    lg = result["loadgen"]
    assert lg["connected"] == 4
    assert lg["errors"] == {}
    assert lg["frames_sent"] > 0
    # Every frame of the window got its Transcript, each timed.
    assert lg["missing_transcripts"] == 0
    assert lg["producer"]["count"] == lg["frames_sent"]
    assert lg["producer"]["p99_ms"] is not None
    assert lg["ack_lag_s"]["samples"] > 0
    assert result["servers"][0]["rss_load_mb"] > 0
    assert "| websockets (plain) | 4 | 4 |" in report.markdown({"baseline": {"capacity": 4, "trials": [result]}})


@requires_shared_database()
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the viewer on another process needs Redis (REDIS_URL)")
def test_it_measures_the_project_with_a_viewer_on_another_process(transactional_db, bench_ctx):
    bench_ctx.database_url = current_database_url()

    result = trial_platform(bench_ctx, 3, viewers=True, label="smoke")

    lg = result["loadgen"]
    assert result.get("crashed") is None
    assert lg["connected"] == 3
    assert lg["viewers"] == 3
    assert lg["errors"] == {}, lg["errors"]
    assert lg["missing_transcripts"] == 0
    assert lg["producer"]["count"] == lg["frames_sent"] > 0
    # Viewers get partials through Redis from the other process (possibly
    # coalesced, so not necessarily every frame).
    assert lg["viewer"]["count"] > 0
    # Acks flowed and were measured against the bytes sent.
    assert lg["ack_lag_s"]["samples"] > 0
    assert lg["ack_lag_s"]["max"] is not None
    assert lg["ack_lag_s"]["max"] >= 0
    assert [s["streams"] for s in result["servers"]] == [3, 3]
    # The sessions' live state was in Redis while they streamed.
    assert result["redis"]["keys_load"] > result["redis"]["keys_idle"]
    table = report.markdown({"viewer": result})
    assert "viewer p50/p99/max" in table
    assert FRAME_BYTES == 3200
