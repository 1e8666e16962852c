"""The session relay (transcription/relay.py): sequence numbers, resume with
``after_seq``, order across publishers, and a reader that survives idle
periods, killed connections and a Redis that goes away — against the real
Redis of REDIS_URL and the in-memory relay alike."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid

import pytest

from transcription.relay import (
    MemoryRelay,
    RedisRelay,
    RelayGap,
    relay_events_key,
    relay_meta_key,
)

REDIS_URL = os.environ.get("REDIS_URL", "")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="needs Redis (REDIS_URL)")


@pytest.fixture
def ids():
    return uuid.uuid4(), uuid.uuid4()


@pytest.fixture
async def redis_relays():
    """A factory of Redis relays (each its own clients, like separate
    processes), closed and their keys removed after the test."""
    made: list[RedisRelay] = []
    keys: list[str] = []

    def make(**kwargs) -> RedisRelay:
        relay = RedisRelay(kwargs.pop("url", REDIS_URL), **kwargs)
        made.append(relay)
        return relay

    make.keys = keys  # type: ignore[attr-defined]
    yield make
    for relay in made:
        await relay.aclose()
    if keys:
        import redis.asyncio as redis_asyncio

        client = redis_asyncio.Redis.from_url(REDIS_URL)
        await client.delete(*keys)
        await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
async def relay(request, redis_relays, ids):
    if request.param == "memory":
        return MemoryRelay()
    redis_relays.keys += [relay_meta_key(*ids), relay_events_key(*ids)]
    return redis_relays()


async def _take(sub, count: int, within: float = 5.0) -> list:
    async with asyncio.timeout(within):
        return [await anext(sub) for _ in range(count)]


async def test_it_numbers_each_sessions_events_and_resumes_after_a_seq(relay, ids):
    clinic, session = ids
    assert await relay.publish(clinic, session, {"type": "transcript", "n": 1}) == 1
    assert await relay.publish(clinic, session, {"type": "transcript", "n": 2}) == 2
    relay.publish_nowait(clinic, session, {"type": "transcript", "n": 3})
    relay.publish_nowait(clinic, session, {"type": "session.ended"})

    sub = await relay.subscribe(clinic, session, after_seq=1)
    assert sub.start_seq == 1
    got = await _take(sub, 3)
    assert [(e.seq, e.event.get("n")) for e in got] == [(2, 2), (3, 3), (4, None)]
    assert sub.last_seq == 4
    # Live events follow the retained ones, with no gap and no duplicate.
    assert await relay.publish(clinic, session, {"type": "transcript", "n": 5}) == 5
    assert [(e.seq, e.event["n"]) for e in await _take(sub, 1)] == [(5, 5)]
    await sub.aclose()

    # Another session has its own numbering.
    assert await relay.publish(clinic, uuid.uuid4(), {"type": "x"}) == 1


async def test_it_starts_after_the_last_seq_when_no_after_seq_is_given(relay, ids):
    clinic, session = ids
    for n in range(3):
        await relay.publish(clinic, session, {"n": n})
    sub = await relay.subscribe(clinic, session)
    assert sub.start_seq == 3 and sub.epoch
    await relay.publish(clinic, session, {"n": 3})
    assert [e.seq for e in await _take(sub, 1)] == [4]
    await sub.aclose()


async def test_it_delivers_a_sessions_first_events_to_a_subscriber_that_came_before_them(relay, ids):
    clinic, session = ids
    sub = await relay.subscribe(clinic, session)
    assert sub.start_seq == 0 and sub.epoch is None
    await relay.publish(clinic, session, {"n": 1})
    assert [e.seq for e in await _take(sub, 1)] == [1]
    await sub.aclose()


async def test_it_never_shows_one_clinics_events_to_another_clinics_session(relay, ids):
    clinic_a, session = ids
    clinic_b = uuid.uuid4()
    sub_b = await relay.subscribe(clinic_b, session)
    await relay.publish(clinic_a, session, {"n": "a"})
    with pytest.raises(TimeoutError):
        await _take(sub_b, 1, within=0.3)
    await relay.publish(clinic_b, session, {"n": "b"})
    assert [e.event["n"] for e in await _take(sub_b, 1)] == ["b"]
    await sub_b.aclose()


async def test_it_reports_a_gap_when_the_missed_events_were_trimmed(ids, settings):
    clinic, session = ids
    settings.RELAY_MAXLEN = 10
    memory = MemoryRelay()
    for _ in range(30):
        memory.publish_nowait(clinic, session, {"t": "p"})
    with pytest.raises(RelayGap) as gap:
        await memory.subscribe(clinic, session, after_seq=5)
    assert gap.value.reason == "trimmed" and gap.value.last_seq == 5
    # What is still retained can be resumed from.
    sub = await memory.subscribe(clinic, session, after_seq=25)
    assert [e.seq for e in await _take(sub, 5)] == [26, 27, 28, 29, 30]


@needs_redis
async def test_it_reports_a_gap_when_redis_trimmed_the_missed_events(redis_relays, ids):
    clinic, session = ids
    redis_relays.keys += [relay_meta_key(*ids), relay_events_key(*ids)]
    relay = redis_relays(maxlen=10)
    # MAXLEN ~ trims whole stream nodes (100 entries each by default).
    for _ in range(500):
        relay.publish_nowait(clinic, session, {"t": "p"})
    assert await relay.publish(clinic, session, {"t": "last"}) == 501
    with pytest.raises(RelayGap) as gap:
        await relay.subscribe(clinic, session, after_seq=5)
    assert gap.value.reason == "trimmed" and gap.value.last_seq == 5
    sub = await relay.subscribe(clinic, session, after_seq=498)
    assert [e.seq for e in await _take(sub, 3)] == [499, 500, 501]
    await sub.aclose()


async def test_it_reports_a_reset_when_the_sessions_log_is_not_the_one_the_subscriber_knew(relay, ids):
    clinic, session = ids
    await relay.publish(clinic, session, {"n": 1})
    sub = await relay.subscribe(clinic, session, after_seq=0)
    assert [e.seq for e in await _take(sub, 1)] == [1]
    epoch = sub.epoch
    await sub.aclose()
    # What an emptied Redis or an expired log looks like: numbering restarts.
    if isinstance(relay, MemoryRelay):
        relay._logs.clear()
    else:
        await relay._redis.delete(relay_meta_key(clinic, session), relay_events_key(clinic, session))
    await relay.publish(clinic, session, {"n": "new"})
    with pytest.raises(RelayGap) as gap:
        await relay.subscribe(clinic, session, after_seq=1, epoch=epoch)
    assert gap.value.reason == "reset"
    # A subscriber already listening learns it too.
    live = await relay.subscribe(clinic, session)
    if isinstance(relay, MemoryRelay):
        relay._logs.clear()
    else:
        await relay._redis.delete(relay_meta_key(clinic, session), relay_events_key(clinic, session))
    await relay.publish(clinic, session, {"n": "newer"})
    with pytest.raises(RelayGap) as gap:
        await _take(live, 1)
    assert gap.value.reason == "reset" and gap.value.last_seq == 1


async def test_it_drops_a_subscriber_that_falls_behind_with_a_clear_signal(relay, ids, settings):
    clinic, session = ids
    settings.RELAY_QUEUE_SIZE = 10
    if isinstance(relay, RedisRelay):
        relay._queue_size = 10
    sub = await relay.subscribe(clinic, session)
    await relay.publish(clinic, session, {"n": 1})
    assert [e.seq for e in await _take(sub, 1)] == [1]
    for n in range(2, 40):
        await relay.publish(clinic, session, {"n": n})
    await asyncio.sleep(0.2)
    with pytest.raises(RelayGap) as gap:
        await _take(sub, 1)
    assert gap.value.reason == "overflow" and gap.value.last_seq == 1
    assert len(sub._queue) == 0
    # It can resume from what it had.
    again = await relay.subscribe(clinic, session, after_seq=gap.value.last_seq)
    assert [e.seq for e in await _take(again, 3)] == [2, 3, 4]
    await again.aclose()


async def test_it_takes_events_published_from_synchronous_code(relay, ids, settings):
    from transcription import relay as relay_module

    clinic, session = ids
    if isinstance(relay, MemoryRelay):
        # publish_sync serves the process's own relay without REDIS_URL.
        settings.REDIS_URL = ""
        relay = relay_module._memory_relay
    else:
        settings.REDIS_URL = REDIS_URL
    sub = await relay.subscribe(clinic, session)
    seqs: list[int] = []
    thread = threading.Thread(target=lambda: seqs.append(relay_module.publish_sync(clinic, session, {"type": "end"})))
    thread.start()
    await asyncio.to_thread(thread.join)
    got = await _take(sub, 1)
    assert [(e.seq, e.event) for e in got] == [(seqs[0], {"type": "end"})]
    await sub.aclose()


@needs_redis
async def test_it_sends_what_all_sessions_publish_in_one_tick_as_one_batch(redis_relays):
    relay = redis_relays()
    sessions = [(uuid.uuid4(), uuid.uuid4()) for _ in range(50)]
    for ids in sessions:
        redis_relays.keys += [relay_meta_key(*ids), relay_events_key(*ids)]
    subs = [await relay.subscribe(*ids) for ids in sessions]
    before = relay.batches_sent
    for ids in sessions:
        relay.publish_nowait(*ids, {"type": "transcript"})
    last = await relay.publish(*sessions[0], {"type": "transcript"})
    assert last == 2
    assert relay.batches_sent == before + 1
    for sub in subs:
        assert [e.seq for e in await _take(sub, 1)] == [1]


@needs_redis
async def test_it_keeps_one_order_for_publishers_in_separate_clients_and_threads(redis_relays, ids):
    clinic, session = ids
    redis_relays.keys += [relay_meta_key(*ids), relay_events_key(*ids)]
    publisher_a, publisher_b, watcher = redis_relays(), redis_relays(), redis_relays()
    sub = await watcher.subscribe(clinic, session, after_seq=0)

    def sync_publisher() -> None:
        from transcription.relay import publish_sync

        for n in range(100):
            publish_sync(clinic, session, {"who": "sync", "n": n})

    async def async_publisher(relay: RedisRelay, who: str) -> None:
        for n in range(100):
            relay.publish_nowait(clinic, session, {"who": who, "n": n})
            if n % 7 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(
        async_publisher(publisher_a, "a"), async_publisher(publisher_b, "b"), asyncio.to_thread(sync_publisher)
    )
    got = await _take(sub, 300, within=10)
    assert [e.seq for e in got] == list(range(1, 301))
    for who in ("a", "b", "sync"):
        assert [e.event["n"] for e in got if e.event["who"] == who] == list(range(100))


@needs_redis
async def test_it_stays_subscribed_through_idle_periods_longer_than_every_timeout(redis_relays, ids):
    """The idle race that killed channel-layer listeners: reads that outlast
    the socket timeout. Here every timeout is a fraction of the idle time."""
    clinic, session = ids
    redis_relays.keys += [relay_meta_key(*ids), relay_events_key(*ids)]
    relay = redis_relays(socket_timeout=0.2, read_timeout=0.3, ping_after=0.25)
    sub = await relay.subscribe(clinic, session)
    await asyncio.sleep(2.0)
    await redis_relays().publish(clinic, session, {"type": "session.ended"})
    assert [e.event["type"] for e in await _take(sub, 1)] == ["session.ended"]
    assert relay.reconnects == 0
    await sub.aclose()


async def _kill_reader_connection(relay: RedisRelay) -> None:
    clients = await relay._redis.client_list()
    ids = [c["id"] for c in clients if c.get("name") == relay.name]
    assert ids, "the reader's connection is named"
    for client_id in ids:
        await relay._redis.client_kill_filter(_id=client_id)


@needs_redis
async def test_it_catches_up_after_its_connection_is_killed(redis_relays, ids):
    clinic, session = ids
    redis_relays.keys += [relay_meta_key(*ids), relay_events_key(*ids)]
    watcher, publisher = redis_relays(backoff_max=0.3), redis_relays()
    sub = await watcher.subscribe(clinic, session)
    await publisher.publish(clinic, session, {"n": 1})
    assert [e.seq for e in await _take(sub, 1)] == [1]
    await _kill_reader_connection(watcher)
    # Published while the reader is down or reconnecting: caught up from the log.
    for n in range(2, 12):
        await publisher.publish(clinic, session, {"n": n})
    assert [e.seq for e in await _take(sub, 10)] == list(range(2, 12))
    assert watcher.reconnects >= 1
    await sub.aclose()


@needs_redis
async def test_it_survives_a_malformed_message_on_its_channel(redis_relays, ids):
    clinic, session = ids
    redis_relays.keys += [relay_meta_key(*ids), relay_events_key(*ids)]
    relay = redis_relays(backoff_max=0.3)
    sub = await relay.subscribe(clinic, session)
    await relay._redis.publish(relay_events_key(clinic, session), "not a relay message")
    await relay.publish(clinic, session, {"n": 1})
    await relay.publish(clinic, session, {"n": 2})
    assert [e.seq for e in await _take(sub, 2)] == [1, 2]
    await sub.aclose()


class _Proxy:
    """A TCP proxy on 127.0.0.1 that can be stopped (every connection cut,
    new ones refused) and started again on the same port: a Redis restart
    as the relay sees it, without touching the shared server."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


@needs_redis
async def test_it_catches_up_when_redis_goes_away_and_comes_back(redis_relays, ids):
    from urllib.parse import urlsplit

    clinic, session = ids
    redis_relays.keys += [relay_meta_key(*ids), relay_events_key(*ids)]
    upstream = urlsplit(REDIS_URL)
    proxy = _Proxy(upstream.port or 6379)
    await proxy.start()
    watcher = redis_relays(url=f"redis://127.0.0.1:{proxy.port}{upstream.path}", backoff_max=0.3)
    publisher = redis_relays()
    try:
        sub = await watcher.subscribe(clinic, session)
        await publisher.publish(clinic, session, {"n": 1})
        assert [e.seq for e in await _take(sub, 1)] == [1]
        await proxy.stop()
        for n in range(2, 6):
            await publisher.publish(clinic, session, {"n": n})
        await asyncio.sleep(1.0)  # several failed reconnects (refused)
        await proxy.start()
        await publisher.publish(clinic, session, {"n": 6})
        assert [e.seq for e in await _take(sub, 5)] == [2, 3, 4, 5, 6]
        assert watcher.reconnects >= 1
        await sub.aclose()
    finally:
        with contextlib.suppress(Exception):
            await proxy.stop()


@needs_redis
async def test_it_restarts_a_reader_that_died_and_catches_its_subscriptions_up(redis_relays, ids):
    clinic, session = ids
    redis_relays.keys += [relay_meta_key(*ids), relay_events_key(*ids)]
    relay, publisher = redis_relays(backoff_max=0.2), redis_relays()
    sub = await relay.subscribe(clinic, session)

    class Escaped(BaseException):
        """Something the reader's own retry loop does not catch."""

    read = relay._read

    async def dies_once(connected):
        relay._read = read
        raise Escaped

    relay._read = dies_once
    dead = relay._reader
    await _kill_reader_connection(relay)
    await publisher.publish(clinic, session, {"n": 1})
    assert [e.seq for e in await _take(sub, 1)] == [1]
    assert relay._reader is not dead and dead.done()
    await sub.aclose()


# --- an ended session's logs don't outlive it by an hour -------------------------------------


@needs_redis
async def test_it_keeps_an_ended_sessions_logs_only_briefly_in_redis(redis_relays, ids, settings):
    """A clinic day ends thousands of sessions: their logs (the viewers' and
    the control log) expire RELAY_ENDED_SECONDS after the end, not
    RELAY_IDLE_SECONDS, and a later event (a viewer leaving) does not give
    them the long expiry back."""
    import redis.asyncio as redis_asyncio

    from sessions.events import SESSION_ENDED
    from transcription.relay import control_log

    clinic, session = ids
    control = control_log(session)
    keys = [
        relay_meta_key(clinic, session),
        relay_events_key(clinic, session),
        relay_meta_key(clinic, control),
        relay_events_key(clinic, control),
    ]
    redis_relays.keys += keys
    relay = redis_relays(idle_seconds=3600, ended_seconds=30)
    await relay.publish(clinic, session, {"type": "transcript"})
    await relay.publish(clinic, control, {"type": "viewer.joined"})
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        assert all(ttl > 3000 for ttl in [await client.ttl(key) for key in keys])
        await relay.publish(clinic, session, {"type": SESSION_ENDED})
        assert all(0 < ttl <= 30 for ttl in [await client.ttl(key) for key in keys])
        await relay.publish(clinic, control, {"type": "viewer.left"})
        assert all(0 < ttl <= 30 for ttl in [await client.ttl(key) for key in keys])
    finally:
        await client.aclose()


@needs_redis
async def test_it_shortens_the_logs_of_a_session_ended_from_synchronous_code(ids, settings):
    """The REST end publishes through publish_sync: the same expiry."""
    import redis

    from sessions.events import SESSION_ENDED
    from transcription import relay as relay_module
    from transcription.relay import control_log

    clinic, session = ids
    settings.REDIS_URL = REDIS_URL
    settings.RELAY_ENDED_SECONDS = 30
    client = redis.Redis.from_url(REDIS_URL)
    keys = [relay_meta_key(clinic, session), relay_events_key(clinic, session)]
    keys += [relay_meta_key(clinic, control_log(session)), relay_events_key(clinic, control_log(session))]
    try:
        relay_module.publish_sync(clinic, session, {"type": "transcript"})
        assert client.ttl(keys[0]) > 60
        relay_module.publish_sync(clinic, control_log(session), {"type": SESSION_ENDED})
        relay_module.publish_sync(clinic, session, {"type": SESSION_ENDED})
        assert all(0 < client.ttl(key) <= 30 for key in keys)
    finally:
        client.delete(*keys)
        client.close()


async def test_it_forgets_an_ended_sessions_logs_in_memory_after_the_ended_expiry(ids, monkeypatch):
    from sessions.events import SESSION_ENDED
    from transcription import relay as relay_module
    from transcription.relay import control_log

    clinic, session = ids
    now = [1000.0]
    monkeypatch.setattr(relay_module.time, "monotonic", lambda: now[0])
    memory = MemoryRelay(idle_seconds=3600, ended_seconds=30)
    memory.publish_sync(clinic, control_log(session), {"type": "viewer.joined"})
    memory.publish_sync(clinic, session, {"type": "transcript"})
    now[0] += 100  # idle, but not ended: kept
    assert memory.position(clinic, session)[0] == 1
    memory.publish_sync(clinic, session, {"type": SESSION_ENDED})
    now[0] += 31
    assert memory.position(clinic, session) == (0, None)
    assert memory.position(clinic, control_log(session)) == (0, None)
    # Any publish sweeps what expired: a long day doesn't accumulate logs.
    memory.publish_sync(clinic, uuid.uuid4(), {"type": "transcript"})
    assert relay_events_key(clinic, session) not in memory._logs
    assert relay_events_key(clinic, control_log(session)) not in memory._logs


@needs_redis
async def test_it_reads_the_control_logs_position_in_the_claims_own_script(ids, settings):
    """A producer's connect: the lease, the slot and where its control log
    stands in one Redis step — the same position ``position_sync`` reads."""
    import redis

    from transcription import relay as relay_module
    from transcription.live_state import RedisLiveStore, live_state_key, quota_key
    from transcription.relay import control_log

    clinic, session = ids
    settings.REDIS_URL = REDIS_URL
    store = RedisLiveStore(REDIS_URL)
    meta = relay_meta_key(clinic, control_log(session))
    keys = [meta, relay_events_key(clinic, control_log(session)), live_state_key(clinic, session), quota_key(clinic)]
    client = redis.Redis.from_url(REDIS_URL)
    try:
        fresh = store.claim_slot_sync(
            clinic_id=clinic, session_id=session, owner="a", takeover=False, limit=5, relay_meta_key=meta
        )
        assert (fresh.ok, fresh.relay_position) == (True, (0, None))
        relay_module.publish_sync(clinic, control_log(session), {"type": "viewer.joined"})
        relay_module.publish_sync(clinic, control_log(session), {"type": "viewer.joined"})
        again = store.claim_slot_sync(
            clinic_id=clinic, session_id=session, owner="b", takeover=True, limit=5, relay_meta_key=meta
        )
        assert (again.ok, again.previous_owner) == (True, "a")
        assert again.relay_position == relay_module.position_sync(clinic, control_log(session))
        assert again.relay_position[0] == 2
        refused = store.claim_slot_sync(
            clinic_id=clinic, session_id=session, owner="c", takeover=False, limit=5, relay_meta_key=meta
        )
        assert (refused.ok, refused.refused, refused.relay_position) == (False, "producer_active", None)
    finally:
        client.delete(*keys)
        client.close()
        await store.aclose()
