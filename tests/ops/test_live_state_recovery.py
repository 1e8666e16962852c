"""A Redis that comes back empty (restart, failover to an empty node) must
not end every live stream: the producer whose lease state vanished takes it
back at its next renewal, while a lease held or released by someone else is
still refused."""

import os
import uuid

import pytest

from transcription.live_state import RedisLiveStore, live_state_key

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL)")


async def test_it_takes_a_lease_back_when_redis_lost_the_state(settings):
    store = RedisLiveStore(os.environ["REDIS_URL"])
    clinic, session = uuid.uuid4(), uuid.uuid4()
    key = live_state_key(clinic, session)
    try:
        assert (await store.claim(clinic_id=clinic, session_id=session, owner="p1", takeover=False)).ok
        await store._redis.delete(key)  # what a restarted, empty Redis looks like
        assert await store.renew(clinic_id=clinic, session_id=session, owner="p1", durable_bytes=3200)
        snapshot = await store.snapshot(clinic_id=clinic, session_id=session)
        assert snapshot["owner"] == "p1" and snapshot["durable_bytes"] == "3200"
        assert await store.streams_in_use(clinic_id=clinic) == 1
        # Someone else's lease, or a released one, is never taken back.
        assert not await store.renew(clinic_id=clinic, session_id=session, owner="p2", durable_bytes=0)
        await store.release(clinic_id=clinic, session_id=session, owner="p1", durable_bytes=3200)
        assert not await store.renew(clinic_id=clinic, session_id=session, owner="p1", durable_bytes=3200)
    finally:
        await store._redis.delete(key, f"clinic:{clinic}:streams")
        await store.aclose()
