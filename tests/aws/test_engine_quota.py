"""The engine stream quota: limits, queue order, fairness, failover and
expiry, on both backends (real Redis and in-process), plus two OS
processes competing for the same Redis quota."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.aws.conftest import wait_until
from transcription.engine_quota import LocalEngineQuota, QuotaLimits, RedisEngineQuota

REPO = Path(__file__).resolve().parents[2]


def _limits(**overrides) -> QuotaLimits:
    values = {"regions": ("r1",), "streams_per_region": 2, "starts_per_second": 100, "poll_seconds": 0.02}
    values.update(overrides)
    return QuotaLimits(**values)


@pytest.fixture(params=["local", "redis"])
def make_quota(request):
    prefixes = []

    def make(**overrides):
        limits = _limits(**overrides)
        if request.param == "local":
            return LocalEngineQuota(limits)
        if not settings.REDIS_URL:
            pytest.skip("REDIS_URL not set")
        prefix = f"test-eq-{uuid.uuid4().hex[:8]}"
        prefixes.append(prefix)
        return RedisEngineQuota(limits, redis_url=settings.REDIS_URL, prefix=prefix)

    yield make
    if prefixes:
        client = redis.Redis.from_url(settings.REDIS_URL)
        for prefix in prefixes:
            keys = list(client.scan_iter(f"{prefix}:*"))
            if keys:
                client.delete(*keys)


async def _waiter(quota, clinic, priority=0, positions=None):
    positions = positions if positions is not None else []
    lease = await quota.acquire(clinic_id=clinic, priority=priority, on_position=positions.append)
    return lease


async def _until_queued(positions):
    await wait_until(lambda: positions)


async def test_it_grants_up_to_the_limit_then_queues_in_arrival_order(make_quota):
    quota = make_quota()
    first = await quota.acquire(clinic_id="a")
    await quota.acquire(clinic_id="b")
    assert await quota.usage() == {"r1": 2}
    p3, p4 = [], []
    t3 = asyncio.ensure_future(_waiter(quota, "c", positions=p3))
    await _until_queued(p3)
    t4 = asyncio.ensure_future(_waiter(quota, "d", positions=p4))
    await _until_queued(p4)
    assert (p3, p4) == ([1], [2])
    await quota.release(first)
    lease3 = await asyncio.wait_for(t3, 5)
    assert lease3.region == "r1" and not t4.done()
    await asyncio.sleep(0.1)
    assert p4[-1] == 1 and not t4.done()
    await quota.release(lease3)
    assert (await asyncio.wait_for(t4, 5)).clinic_id == "d"


async def test_it_fails_over_to_the_next_region_when_one_is_full_or_down(make_quota):
    quota = make_quota(regions=("r1", "r2"), streams_per_region=1)
    assert (await quota.acquire(clinic_id="a")).region == "r1"
    assert (await quota.acquire(clinic_id="a")).region == "r2"
    quota2 = make_quota(regions=("r1", "r2"), streams_per_region=1, region_down_seconds=0.3)
    await quota2.mark_region_down("r1")
    assert (await quota2.acquire(clinic_id="a")).region == "r2"
    await asyncio.sleep(0.4)
    assert (await quota2.acquire(clinic_id="a")).region == "r1"


async def test_it_limits_the_start_rate(make_quota):
    quota = make_quota(streams_per_region=10, starts_per_second=2)
    await quota.acquire(clinic_id="a")
    await quota.acquire(clinic_id="a")
    positions: list[int] = []
    lease = await asyncio.wait_for(quota.acquire(clinic_id="a", on_position=positions.append), 5)
    assert positions == [1]  # it had to wait for the one-second window
    assert lease.region == "r1"


async def test_it_serves_higher_priority_first(make_quota):
    quota = make_quota(streams_per_region=1)
    held = await quota.acquire(clinic_id="x")
    low_positions, high_positions = [], []
    low = asyncio.ensure_future(_waiter(quota, "low", 0, low_positions))
    await _until_queued(low_positions)
    high = asyncio.ensure_future(_waiter(quota, "high", 5, high_positions))
    await _until_queued(high_positions)
    assert high_positions == [1]
    await quota.release(held)
    granted = await asyncio.wait_for(high, 5)
    assert granted.clinic_id == "high" and not low.done()
    await quota.release(granted)
    await asyncio.wait_for(low, 5)


async def test_it_gives_the_next_slot_to_the_clinic_running_fewer_streams(make_quota):
    quota = make_quota(streams_per_region=2, aging_seconds=0)
    a1 = await quota.acquire(clinic_id="a")
    await quota.acquire(clinic_id="a")
    a_positions, b_positions = [], []
    a3 = asyncio.ensure_future(_waiter(quota, "a", 0, a_positions))
    await _until_queued(a_positions)
    b1 = asyncio.ensure_future(_waiter(quota, "b", 0, b_positions))
    await _until_queued(b_positions)
    # B arrived later but runs no stream; A runs two: B moves ahead.
    assert b_positions == [1]
    await wait_until(lambda: a_positions[-1] == 2)
    assert a_positions == [1, 2]
    await quota.release(a1)
    assert (await asyncio.wait_for(b1, 5)).clinic_id == "b"
    assert not a3.done()
    a3.cancel()


async def test_it_ages_waiting_tickets_so_low_priority_is_not_starved(make_quota):
    quota = make_quota(streams_per_region=1, aging_seconds=0.3)
    held = await quota.acquire(clinic_id="x")
    low_positions, high_positions = [], []
    low = asyncio.ensure_future(_waiter(quota, "low", 0, low_positions))
    await asyncio.sleep(0.7)  # two aging steps: effective priority 2
    high = asyncio.ensure_future(_waiter(quota, "high", 1, high_positions))
    await _until_queued(high_positions)
    await quota.release(held)
    assert (await asyncio.wait_for(low, 5)).clinic_id == "low"
    high.cancel()


async def test_it_frees_the_slots_and_places_of_a_crashed_holder(make_quota):
    quota = make_quota(streams_per_region=1, lease_ttl_seconds=0.8, ticket_ttl_seconds=0.2)
    await quota.acquire(clinic_id="crashed")  # never renewed, never released
    # A waiter that vanished without cancelling (its process died).
    await quota._try_acquire("ghost-ticket", "ghost", 9)
    positions: list[int] = []
    lease = await asyncio.wait_for(quota.acquire(clinic_id="alive", on_position=positions.append), 5)
    assert lease.clinic_id == "alive"
    assert positions == [2, 1]  # behind the ghost, until its ticket expired


async def test_it_removes_the_ticket_of_a_cancelled_wait(make_quota):
    quota = make_quota(streams_per_region=1)
    held = await quota.acquire(clinic_id="x")
    gone_positions, next_positions = [], []
    gone = asyncio.ensure_future(_waiter(quota, "gone", 0, gone_positions))
    await _until_queued(gone_positions)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    nxt = asyncio.ensure_future(_waiter(quota, "next", 0, next_positions))
    await _until_queued(next_positions)
    assert next_positions == [1]
    await quota.release(held)
    await asyncio.wait_for(nxt, 5)


async def test_it_renews_leases_so_a_live_holder_keeps_its_slot(make_quota):
    quota = make_quota(streams_per_region=1, lease_ttl_seconds=0.3)
    lease = await quota.acquire(clinic_id="a")
    for _ in range(4):
        await asyncio.sleep(0.15)
        await quota.renew(lease)
    assert await quota.usage() == {"r1": 1}
    await quota.release(lease)
    assert await quota.usage() == {"r1": 0}


_COMPETITOR = """
import asyncio, sys, redis
from tests.aws.conftest import wait_until
from transcription.engine_quota import QuotaLimits, RedisEngineQuota

url, prefix, name, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
limits = QuotaLimits(regions=("r1", "r2"), streams_per_region=2, starts_per_second=100, poll_seconds=0.02)

async def main():
    quota = RedisEngineQuota(limits, redis_url=url, prefix=prefix)
    counter = redis.asyncio.from_url(url)
    peak = 0
    async def one(i):
        nonlocal peak
        lease = await quota.acquire(clinic_id=f"{name}-{i % 3}")
        now = await counter.incr(prefix + ":probe:" + lease.region)
        peak = max(peak, now)
        await asyncio.sleep(0.03)
        await counter.decr(prefix + ":probe:" + lease.region)
        await quota.release(lease)
    await asyncio.gather(*(one(i) for i in range(rounds)))
    print(f"done {rounds} peak {peak}")

asyncio.run(main())
"""


def test_it_holds_the_limit_across_two_processes():
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL not set")
    prefix = f"test-eq-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DJANGO_SETTINGS_MODULE": "voiceai.settings_test"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _COMPETITOR, settings.REDIS_URL, prefix, name, "12"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("p1", "p2")
    ]
    try:
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    for (out, err), p in zip(outputs, procs, strict=True):
        assert p.returncode == 0, err
        done, rounds, _, peak = out.split()
        assert (done, rounds) == ("done", "12")
        assert int(peak) <= 2  # never more than the per-region limit at once


async def test_it_refuses_new_waiters_when_the_queue_is_full(make_quota):
    from transcription.engines.base import EngineError

    quota = make_quota(streams_per_region=1, max_waiting=2)
    held = await quota.acquire(clinic_id="x")
    positions: list[list[int]] = [[], []]
    waiters = [asyncio.ensure_future(_waiter(quota, f"c{i}", 0, positions[i])) for i in range(2)]
    await wait_until(lambda: all(positions))
    with pytest.raises(EngineError) as caught:
        await quota.acquire(clinic_id="late")
    assert caught.value.code == "engine_queue_full" and caught.value.retryable is True
    await quota.release(held)
    # Both waiters arrived together: either may be first (their first Redis
    # calls race); each is granted once the other releases.
    done, _ = await asyncio.wait(waiters, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    first = done.pop()
    await quota.release(first.result())
    await asyncio.wait_for(next(w for w in waiters if w is not first), 5)


async def test_it_still_grants_when_every_region_is_marked_down(make_quota):
    quota = make_quota(regions=("r1", "r2"), streams_per_region=1, region_down_seconds=30)
    await quota.mark_region_down("r1")
    await quota.mark_region_down("r2")
    assert (await asyncio.wait_for(quota.acquire(clinic_id="a"), 5)).region == "r1"
