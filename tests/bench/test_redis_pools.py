"""Many streams' Redis operations at once wait for a pooled connection
instead of failing.

redis-py 8 caps an asyncio ``ConnectionPool`` at 100 connections and
raises ``MaxConnectionsError`` ("Too many connections") for the 101st
concurrent command. The benchmark hit it at 200 streams in one process:
lease renewals (what keeps the quota count and takeover safe) and viewer
broadcasts failed by the thousand, visible only as warnings in the log.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL)")

CONCURRENT = 300  # streams of one process whose timers fire together


async def test_it_claims_and_renews_many_leases_at_once():
    from transcription.live_state import get_live_store, live_state_key, quota_key

    store = get_live_store()
    clinic_id = uuid.uuid4()
    session_ids = [uuid.uuid4() for _ in range(CONCURRENT)]
    try:
        claims = await asyncio.gather(
            *(store.claim(clinic_id=clinic_id, session_id=s, owner="bench", takeover=False) for s in session_ids)
        )
        renewed = await asyncio.gather(
            *(store.renew(clinic_id=clinic_id, session_id=s, owner="bench", durable_bytes=3200) for s in session_ids)
        )
    finally:
        import redis.asyncio as redis_asyncio

        client = redis_asyncio.from_url(os.environ["REDIS_URL"])
        await client.delete(quota_key(clinic_id), *(live_state_key(clinic_id, s) for s in session_ids))
        await client.aclose()
    assert all(claim.ok for claim in claims)
    assert all(renewed)


async def test_it_broadcasts_from_many_streams_at_once():
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    groups = [f"bench.pool.{uuid.uuid4().hex}" for _ in range(CONCURRENT)]
    channel = await layer.new_channel()
    await layer.group_add(groups[0], channel)

    await asyncio.gather(*(layer.group_send(g, {"type": "transcript", "n": i}) for i, g in enumerate(groups)))

    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert message == {"type": "transcript", "n": 0}
    await layer.group_discard(groups[0], channel)
