"""Smoke test of the soak benchmark (issue 16, ``make soak``): a run of a
few seconds end to end against the production launcher, the load
generator's bookkeeping staying bounded over a long stream, and the
launcher's heap snapshots. Never a timing: those are ``make soak``'s."""

from __future__ import annotations

import os
import signal
import tracemalloc

import pytest

from bench import soak
from bench.loadgen import Totals
from bench.soak_load import MISSING_AFTER_S, Counts, SoakStream, Window
from bench.trials import BenchContext
from tests.servers import current_database_url, requires_shared_database


class _Transport:
    def __init__(self) -> None:
        self.frames = 0

    def write(self, data: bytes) -> None:
        self.frames += 1


class _Conn:
    closed = False

    def __init__(self) -> None:
        self.transport = _Transport()


async def test_it_keeps_a_streams_bookkeeping_bounded_over_an_hour_of_frames():
    """36,000 frames (an hour at 10/s): the stream keeps only the replies
    still awaited, whatever the length; unanswered ones expire as missing."""
    window = [Window()]
    counts = Counts()
    stream = SoakStream({}, Totals(), window, counts)
    stream.conn = _Conn()
    stream.stopped = True  # no scheduled ticks: the test drives them
    for k in range(36_000):
        stream.stopped = False
        stream._tick()
        stream.stopped = True
        offset = (k + 1) * 3200
        if k % 1000 != 999:  # every 1000th frame never gets its reply
            stream.on_producer_text(b'{"type":"Transcript","is_final":false,"text":"%d"}' % offset, 0.0)
        if k % 600 == 599:  # the sampler's expiry, with time moved on
            window[0] = Window()
            stream.expire(10**9)
    assert counts.frames == 36_000
    assert len(stream.pending) == 0 and window[0].missing <= 1
    assert stream.sent == [] and stream.prod_recv == [] and stream.sched_lag == []
    assert MISSING_AFTER_S > 0


def test_it_writes_a_heap_snapshot_on_sigusr1_when_asked(tmp_path):
    from voiceai.ops import serve

    previous = signal.getsignal(signal.SIGUSR1)
    try:
        serve.install_heap_snapshots(str(tmp_path), frames=1)
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)
        names = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pickle")
        assert names == [f"heap-{os.getpid()}-1.pickle", f"heap-{os.getpid()}-2.pickle"]
        # Beside each snapshot, what the collection before it freed, by type.
        assert (tmp_path / f"heap-{os.getpid()}-1-garbage.txt").exists()
        assert isinstance(tracemalloc.Snapshot.load(str(tmp_path / names[1])), tracemalloc.Snapshot)
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGUSR1, previous)


needs_servers = [
    requires_shared_database(),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the servers need Redis (REDIS_URL)"),
]


@needs_servers[0]
@needs_servers[1]
def test_it_soaks_the_launcher_with_sessions_ending_and_starting(transactional_db, tmp_path):
    from django.conf import settings

    ctx = BenchContext(
        database_url=current_database_url(),
        redis_url=os.environ["REDIS_URL"],
        secret_key=settings.SECRET_KEY,
        work_dir=tmp_path / "soak",
        server_core=None,
        loadgen_core=None,
        channel_prefix="voiceai-soak-smoke",
    )
    args = soak.parse_args(
        [
            *("--producers", "4", "--minutes", "0.25", "--interval", "3", "--session-minutes", "0.03,0.06"),
            *("--viewer-share", "0.5", "--long-share", "0.25", "--baseline-minute", "0.1", "--settle", "1"),
            *("--ramp", "1", "--tracemalloc"),
        ]
    )
    result = soak.run_soak(args, lambda msg: None, ctx)

    assert result.get("crashed") is None
    phases = [s["phase"] for s in result["samples"]]
    assert phases[0] == "idle" and phases[-1] == "after" and phases.count("load") >= 4
    counts = result["loadgen"]["counts"]
    assert counts["sessions_started"] > 4  # the short sessions ended and others began
    assert counts["sessions_ended"] == counts["sessions_started"]
    assert counts["viewers_started"] >= 1 and counts["viewers_ended"] == counts["viewers_started"]
    assert result["loadgen"]["errors"] == {}
    load = [s for s in result["samples"] if s["phase"] == "load"]
    assert sum(s["producer"]["count"] for s in load) > 0
    assert all(s["fds"] > 0 and s["rss_mb"] > 0 and "keys" in s["redis"] for s in result["samples"])
    assert set(result["heap"]["traced_mb"]) == {"start", "baseline", "end", "after"}
    assert result["heap"]["growth_baseline_to_end"]
    assert {"rss_ok", "p99_ok", "fds_ok", "pg_ok", "redis_connections_ok", "redis_ok"} <= set(result["verdict"])

    result.update(
        {
            "machine": {"date": "today", "commit": "abc", "cores": 2, "cpu": "x", "python": "3.11"}
            | {"loadavg_start": "1 1 1", "loadavg_end": "1 1 1"},
            "command": "make soak",
            "args": vars(args),
        }
    )
    text = soak.markdown(result)
    assert "RSS growth" in text and "soak-rss.png" in text
    png = tmp_path / "rss.png"
    soak.plot(result["samples"], png, "smoke")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
