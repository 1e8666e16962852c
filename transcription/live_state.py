"""Cross-process live state of streaming sessions: producer leases and the
clinic's concurrent-stream quota.

With REDIS_URL, state lives in Redis so any process can take a session over:

- ``clinic:{clinic_id}:session:{session_id}`` (``live_state_key``), a small
  hash: ``owner`` (process/connection id of the producer), ``lease_until``
  (epoch ms), ``durable_bytes``. It expires 4 leases after its last write.
- ``clinic:{clinic_id}:streams``, a sorted set of the clinic's streaming
  session ids scored by lease expiry: the quota counts members whose lease
  is still running, so a process killed with ``kill -9`` leaks its slots for
  at most one lease (SESSION_LEASE_SECONDS).
- ``clinic:{clinic_id}:session:{session_id}:viewers``, a sorted set of the
  viewer connections scored by presence expiry. The producer reads the
  count when it renews its lease and sends partials to the channel layer
  only while someone watches (finals always go).

Every check-and-set runs as one Lua script (atomic in Redis). Without
REDIS_URL an in-process store with the same semantics serves the single
process of ``make run`` and the tests.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from dataclasses import dataclass

from django.conf import settings


def live_state_key(clinic_id: object, session_id: object) -> str:
    """Redis key of a session's live state (the design's key layout)."""
    return f"clinic:{clinic_id}:session:{session_id}"


def quota_key(clinic_id: object) -> str:
    return f"clinic:{clinic_id}:streams"


def viewers_key(clinic_id: object, session_id: object) -> str:
    return f"{live_state_key(clinic_id, session_id)}:viewers"


@dataclass(frozen=True, slots=True)
class Claim:
    ok: bool
    # The owner before this claim ("" if none): a live one must be told to go.
    previous_owner: str
    # Why not ok: "producer_active" (another live lease) or "quota_full"
    # (the clinic's concurrent streams are all taken).
    refused: str = ""
    # The session's relay log position (last seq, epoch) read in the same
    # step, when the caller asked for it and the store could (Redis).
    relay_position: tuple[int, str | None] | None = None


def _now_ms() -> int:
    return int(time.time() * 1000)


_CLAIM = """
local owner = redis.call('HGET', KEYS[1], 'owner')
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
if owner and owner ~= ARGV[1] and lease > tonumber(ARGV[2]) and ARGV[3] ~= '1' then
  return {0, owner}
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'lease_until', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, owner or ''}
"""

_RENEW = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- The state is gone (Redis restarted or failed over empty): nobody else
  -- claimed the session since, so its producer takes its lease back.
  redis.call('HSET', KEYS[1], 'owner', ARGV[1])
elseif redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return {0, 0}
end
redis.call('HSET', KEYS[1], 'lease_until', ARGV[2], 'durable_bytes', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {1, redis.call('ZCOUNT', KEYS[3], ARGV[6], '+inf')}
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
  redis.call('HSET', KEYS[1], 'durable_bytes', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[4])
  return 1
end
return 0
"""

# The connect: the lease and a quota slot together, or neither.
_CLAIM_SLOT = """
local owner = redis.call('HGET', KEYS[1], 'owner')
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
if owner and owner ~= ARGV[1] and lease > tonumber(ARGV[2]) and ARGV[3] ~= '1' then
  return {0, owner, 'producer_active'}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
if not redis.call('ZSCORE', KEYS[2], ARGV[6]) and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[7]) then
  return {0, owner or '', 'quota_full'}
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'lease_until', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if #KEYS > 2 then
  local position = redis.call('HMGET', KEYS[3], 'epoch', 'seq')
  return {1, owner or '', '', position[1] or '', position[2] or '0'}
end
return {1, owner or '', ''}
"""

_QUOTA_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""


class LiveStore:
    """The interface; see module docstring for the semantics."""

    async def claim(self, *, clinic_id: object, session_id: object, owner: str, takeover: bool) -> Claim:
        raise NotImplementedError

    def claim_slot_sync(
        self,
        *,
        clinic_id: object,
        session_id: object,
        owner: str,
        takeover: bool,
        limit: int,
        relay_meta_key: str | None = None,
    ) -> Claim:
        """The producer's connect, from its one worker-thread call: the
        session's lease (refused while another producer's is live, unless
        ``takeover``) and one of the clinic's ``limit`` stream slots, both
        or neither, in one step — with, when granted, the position of the
        relay log whose meta hash is ``relay_meta_key`` (``Claim.relay_position``;
        None when this store can't read it)."""
        raise NotImplementedError

    def release_sync(self, *, clinic_id: object, session_id: object, owner: str) -> None:
        """Undo ``claim_slot_sync`` (the connect failed after it)."""
        raise NotImplementedError

    async def renew(self, *, clinic_id: object, session_id: object, owner: str, durable_bytes: int) -> bool:
        """Extend the lease (and the quota slot); False if ``owner`` lost it."""
        owned, _ = await self.renew_status(
            clinic_id=clinic_id, session_id=session_id, owner=owner, durable_bytes=durable_bytes
        )
        return owned

    async def renew_status(
        self, *, clinic_id: object, session_id: object, owner: str, durable_bytes: int
    ) -> tuple[bool, int]:
        """``renew`` plus the number of viewers present (0 when not owned)."""
        raise NotImplementedError

    async def viewer_touch(self, *, clinic_id: object, session_id: object, viewer: str) -> None:
        """Mark a viewer present for one lease; viewers repeat it while open."""
        raise NotImplementedError

    async def viewer_leave(self, *, clinic_id: object, session_id: object, viewer: str) -> None:
        raise NotImplementedError

    async def release(self, *, clinic_id: object, session_id: object, owner: str, durable_bytes: int) -> None:
        raise NotImplementedError

    async def quota_acquire(self, *, clinic_id: object, session_id: object, limit: int) -> bool:
        """Take (or keep) a slot for ``session_id``; False when the clinic is full."""
        raise NotImplementedError

    async def quota_release(self, *, clinic_id: object, session_id: object) -> None:
        raise NotImplementedError

    async def snapshot(self, *, clinic_id: object, session_id: object) -> dict[str, str]:
        raise NotImplementedError

    async def streams_in_use(self, *, clinic_id: object) -> int:
        raise NotImplementedError

    @staticmethod
    def lease_ms() -> int:
        return int(settings.SESSION_LEASE_SECONDS * 1000)


class RedisLiveStore(LiveStore):
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis_asyncio

        # A blocking pool: a burst of renewals from hundreds of streams waits
        # for a free connection. A plain pool (redis-py 8: at most 100) raises
        # MaxConnectionsError instead — measured at 200 streams per process.
        self._url = url
        pool = redis_asyncio.BlockingConnectionPool.from_url(url, decode_responses=True, max_connections=64, timeout=10)
        self._redis = redis_asyncio.Redis(connection_pool=pool)
        self._claim = self._redis.register_script(_CLAIM)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._quota = self._redis.register_script(_QUOTA_ACQUIRE)

    def claim_slot_sync(
        self,
        *,
        clinic_id: object,
        session_id: object,
        owner: str,
        takeover: bool,
        limit: int,
        relay_meta_key: str | None = None,
    ) -> Claim:
        now, lease = _now_ms(), self.lease_ms()
        keys = [live_state_key(clinic_id, session_id), quota_key(clinic_id)]
        if relay_meta_key is not None:
            keys.append(relay_meta_key)
        reply = _sync_scripts(self._url)["claim_slot"](
            keys=keys, args=[owner, now, "1" if takeover else "0", now + lease, lease * 4, str(session_id), limit]
        )
        ok, previous, refused = reply[:3]
        position = (int(reply[4] or 0), reply[3] or None) if len(reply) > 3 else None
        if position is not None and position[1] is None:
            position = (0, None)  # no log yet
        return Claim(
            ok=bool(int(ok)), previous_owner=str(previous or ""), refused=str(refused or ""), relay_position=position
        )

    def release_sync(self, *, clinic_id: object, session_id: object, owner: str) -> None:
        _sync_scripts(self._url)["release"](
            keys=[live_state_key(clinic_id, session_id), quota_key(clinic_id)],
            args=[owner, 0, self.lease_ms() * 4, str(session_id)],
        )

    async def claim(self, *, clinic_id: object, session_id: object, owner: str, takeover: bool) -> Claim:
        now, lease = _now_ms(), self.lease_ms()
        ok, previous = await self._claim(
            keys=[live_state_key(clinic_id, session_id)],
            args=[owner, now, "1" if takeover else "0", now + lease, lease * 4],
        )
        return Claim(ok=bool(int(ok)), previous_owner=str(previous or ""))

    async def renew_status(
        self, *, clinic_id: object, session_id: object, owner: str, durable_bytes: int
    ) -> tuple[bool, int]:
        now, lease = _now_ms(), self.lease_ms()
        ok, viewers = await self._renew(
            keys=[live_state_key(clinic_id, session_id), quota_key(clinic_id), viewers_key(clinic_id, session_id)],
            args=[owner, now + lease, durable_bytes, lease * 4, str(session_id), now],
        )
        return bool(int(ok)), int(viewers)

    async def viewer_touch(self, *, clinic_id: object, session_id: object, viewer: str) -> None:
        key, lease = viewers_key(clinic_id, session_id), self.lease_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {viewer: _now_ms() + lease})
            pipe.zremrangebyscore(key, "-inf", _now_ms())
            pipe.pexpire(key, lease * 4)
            await pipe.execute()

    async def viewer_leave(self, *, clinic_id: object, session_id: object, viewer: str) -> None:
        await self._redis.zrem(viewers_key(clinic_id, session_id), viewer)

    async def release(self, *, clinic_id: object, session_id: object, owner: str, durable_bytes: int) -> None:
        await self._release(
            keys=[live_state_key(clinic_id, session_id), quota_key(clinic_id)],
            args=[owner, durable_bytes, self.lease_ms() * 4, str(session_id)],
        )

    async def quota_acquire(self, *, clinic_id: object, session_id: object, limit: int) -> bool:
        now, lease = _now_ms(), self.lease_ms()
        ok = await self._quota(keys=[quota_key(clinic_id)], args=[now, str(session_id), limit, now + lease, lease * 4])
        return bool(int(ok))

    async def quota_release(self, *, clinic_id: object, session_id: object) -> None:
        await self._redis.zrem(quota_key(clinic_id), str(session_id))

    async def snapshot(self, *, clinic_id: object, session_id: object) -> dict[str, str]:
        return await self._redis.hgetall(live_state_key(clinic_id, session_id))

    async def streams_in_use(self, *, clinic_id: object) -> int:
        return int(await self._redis.zcount(quota_key(clinic_id), _now_ms(), "+inf"))

    async def aclose(self) -> None:
        await self._redis.aclose()


class MemoryLiveStore(LiveStore):
    """Single-process equivalent (no REDIS_URL): same semantics, plain dicts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hashes: dict[str, dict[str, str]] = {}
        self._quota: dict[str, dict[str, int]] = {}
        self._viewers: dict[str, dict[str, int]] = {}

    def claim_slot_sync(
        self,
        *,
        clinic_id: object,
        session_id: object,
        owner: str,
        takeover: bool,
        limit: int,
        relay_meta_key: str | None = None,
    ) -> Claim:
        # The relay's position is the in-memory relay's (the caller reads it).
        # Called from a worker thread while the event loop uses the same
        # dicts: one lock makes it one step, as the Lua script is in Redis.
        with self._lock:
            now = _now_ms()
            state = self._hashes.setdefault(live_state_key(clinic_id, session_id), {})
            current = state.get("owner", "")
            if current and current != owner and int(state.get("lease_until", "0")) > now and not takeover:
                return Claim(ok=False, previous_owner=current, refused="producer_active")
            slots = self._quota.setdefault(quota_key(clinic_id), {})
            for member, until in list(slots.items()):
                if until <= now:
                    del slots[member]
            if str(session_id) not in slots and len(slots) >= limit:
                return Claim(ok=False, previous_owner=current, refused="quota_full")
            slots[str(session_id)] = now + self.lease_ms()
            state.update(owner=owner, lease_until=str(now + self.lease_ms()))
            return Claim(ok=True, previous_owner=current)

    def release_sync(self, *, clinic_id: object, session_id: object, owner: str) -> None:
        with self._lock:
            state = self._hashes.get(live_state_key(clinic_id, session_id), {})
            if state.get("owner") == owner:
                state.pop("owner", None)
                state.pop("lease_until", None)
                self._quota.get(quota_key(clinic_id), {}).pop(str(session_id), None)

    async def claim(self, *, clinic_id: object, session_id: object, owner: str, takeover: bool) -> Claim:
        with self._lock:
            now = _now_ms()
            state = self._hashes.setdefault(live_state_key(clinic_id, session_id), {})
            current = state.get("owner", "")
            if current and current != owner and int(state.get("lease_until", "0")) > now and not takeover:
                return Claim(ok=False, previous_owner=current)
            state.update(owner=owner, lease_until=str(now + self.lease_ms()))
            return Claim(ok=True, previous_owner=current)

    async def renew_status(
        self, *, clinic_id: object, session_id: object, owner: str, durable_bytes: int
    ) -> tuple[bool, int]:
        with self._lock:
            state = self._hashes.get(live_state_key(clinic_id, session_id), {})
            if state.get("owner") != owner:
                return False, 0
            now = _now_ms()
            until = now + self.lease_ms()
            state.update(lease_until=str(until), durable_bytes=str(durable_bytes))
            self._quota.setdefault(quota_key(clinic_id), {})[str(session_id)] = until
            present = self._viewers.get(viewers_key(clinic_id, session_id), {})
            return True, sum(1 for expiry in present.values() if expiry > now)

    async def viewer_touch(self, *, clinic_id: object, session_id: object, viewer: str) -> None:
        with self._lock:
            self._viewers.setdefault(viewers_key(clinic_id, session_id), {})[viewer] = _now_ms() + self.lease_ms()

    async def viewer_leave(self, *, clinic_id: object, session_id: object, viewer: str) -> None:
        with self._lock:
            present = self._viewers.get(viewers_key(clinic_id, session_id), {})
            present.pop(viewer, None)
            if not present:
                self._viewers.pop(viewers_key(clinic_id, session_id), None)

    async def release(self, *, clinic_id: object, session_id: object, owner: str, durable_bytes: int) -> None:
        with self._lock:
            state = self._hashes.get(live_state_key(clinic_id, session_id), {})
            if state.get("owner") == owner:
                state.pop("owner", None)
                state.pop("lease_until", None)
                state["durable_bytes"] = str(durable_bytes)
                self._quota.get(quota_key(clinic_id), {}).pop(str(session_id), None)

    async def quota_acquire(self, *, clinic_id: object, session_id: object, limit: int) -> bool:
        with self._lock:
            now = _now_ms()
            slots = self._quota.setdefault(quota_key(clinic_id), {})
            for member, until in list(slots.items()):
                if until <= now:
                    del slots[member]
            if str(session_id) in slots or len(slots) < limit:
                slots[str(session_id)] = now + self.lease_ms()
                return True
            return False

    async def quota_release(self, *, clinic_id: object, session_id: object) -> None:
        with self._lock:
            self._quota.get(quota_key(clinic_id), {}).pop(str(session_id), None)

    async def snapshot(self, *, clinic_id: object, session_id: object) -> dict[str, str]:
        return dict(self._hashes.get(live_state_key(clinic_id, session_id), {}))

    async def streams_in_use(self, *, clinic_id: object) -> int:
        now = _now_ms()
        return sum(1 for until in self._quota.get(quota_key(clinic_id), {}).values() if until > now)


_memory_store = MemoryLiveStore()

# Synchronous Redis for the connect's worker-thread call: one client per
# process (thread-safe, with its own pool), scripts registered once.
_sync_lock = threading.Lock()
_sync: dict[str, dict] = {}


def _sync_scripts(url: str) -> dict:
    with _sync_lock:
        scripts = _sync.get(url)
        if scripts is None:
            import redis

            client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
            scripts = _sync[url] = {
                "client": client,
                "claim_slot": client.register_script(_CLAIM_SLOT),
                "release": client.register_script(_RELEASE),
            }
        return scripts


def producer_attached(*, clinic_id: object, session_id: object) -> bool:
    """Whether a producer holds the session's lease right now, for sync
    request handlers (erasure). A producer writes audio parts until it
    releases its lease, also after the session was ended over REST (it
    drains the engine, flushes and seals first). Raises on a Redis error:
    the caller must not assume "nobody"."""
    key = live_state_key(clinic_id, session_id)
    if not getattr(settings, "REDIS_URL", ""):
        state = dict(_memory_store._hashes.get(key, {}))
    else:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True, socket_timeout=5)
        try:
            state = client.hgetall(key)
        finally:
            client.close()
    return bool(state.get("owner")) and int(state.get("lease_until") or 0) > _now_ms()


def streams_in_use_now(*, clinic_id: object) -> int:
    """How many of the clinic's concurrent-stream slots are held right now,
    for sync readers (usage pages): what ``quota_acquire`` counts, not the
    sessions whose row says live (a crashed or abandoned stream keeps that
    status, but its slot lapses after one lease). Raises on a Redis error."""
    key = quota_key(clinic_id)
    if not getattr(settings, "REDIS_URL", ""):
        now = _now_ms()
        return sum(1 for until in _memory_store._quota.get(key, {}).values() if until > now)
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
    try:
        return int(client.zcount(key, _now_ms(), "+inf"))
    finally:
        client.close()


# redis.asyncio connections belong to one event loop; tests run many loops.
_redis_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisLiveStore] = weakref.WeakKeyDictionary()


def get_live_store() -> LiveStore:
    """The store for this process and event loop."""
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return _memory_store
    loop = asyncio.get_running_loop()
    store = _redis_stores.get(loop)
    if store is None:
        store = _redis_stores[loop] = RedisLiveStore(url)
    return store
