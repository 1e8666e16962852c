"""Smoke test of the relay benchmark (bench/relay_bench.py): a few sessions
for a second, publisher and subscriber in their own processes through the
real Redis. It proves the harness publishes, receives and counts — and that
the relay delivered every event exactly once — never a timing."""

from __future__ import annotations

import argparse
import os

import pytest

from bench.relay_bench import _table, run_mechanism

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL)")


@pytest.mark.parametrize("mechanism", ["relay", "pubsub"])
def test_it_measures_a_mechanism_end_to_end(mechanism):
    opts = argparse.Namespace(sessions=5, rate=10.0, seconds=1.0, warmup=0.2, drain=0.5, pub_core=0, sub_core=1)
    row = run_mechanism(mechanism, opts)
    assert row["published"] > 0
    assert row["received"] == row["published"]
    assert row["lost"] == 0 and row["errors"] == 0
    assert row["p99_ms"] is not None and row["sub_cpu_us_per_event"] is not None
    assert f"| {mechanism} |" in _table([row], opts)
