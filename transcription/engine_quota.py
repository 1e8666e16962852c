"""How many upstream engine streams run at once, across all processes.

Transcribe limits concurrent streams per region (ENGINE_STREAMS_PER_REGION,
AWS default 25) and stream starts per second (ENGINE_STARTS_PER_SECOND).
Every upstream stream holds a *lease* on a region; a session that finds no
free slot waits with a *ticket* in one queue and hears its position.

- Redis (REDIS_URL set): the leases, start times and tickets live in Redis;
  one Lua script decides a grant atomically, so any number of processes
  share the quota. Leases and tickets carry an expiry renewed by their
  holder, so a crashed process's slots and places free themselves.
- No REDIS_URL: ``LocalEngineQuota``, the same rules in process memory.

Who goes next (see docs/engine-quota.md): the highest *effective priority*
(clinic priority + 1 per ``aging_seconds`` waited, so a low priority is
delayed but never starved), then the clinic with the fewest streams running
now (fair share: a clinic holding many streams yields to one holding few),
then the oldest ticket. A ticket at position p is granted when p is within
the free slots of the regions not marked down, in region order, and the
region's start rate allows it. A region that throttles or fails is marked
down for a few seconds, so the next grant fails over to the next region
(when every region is marked down, all are tried again).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings

from transcription.engines.base import EngineError
from voiceai.logging import get_logger
from voiceai.ops.metrics import ENGINE_QUEUE_LENGTH

logger = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class StreamLease:
    lease_id: str
    region: str
    clinic_id: str


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    regions: tuple[str, ...]
    streams_per_region: int
    starts_per_second: int
    lease_ttl_seconds: float = 30.0
    ticket_ttl_seconds: float = 10.0
    aging_seconds: float = 30.0
    poll_seconds: float = 0.2
    region_down_seconds: float = 5.0
    # Each decision ranks the whole queue (0.45 ms of Redis time at 100
    # waiters, 9 ms at 1,000): beyond this, new sessions are refused
    # (retryable ``engine_queue_full``) instead of slowing every waiter.
    max_waiting: int = 200


class EngineQuota(abc.ABC):
    def __init__(self, limits: QuotaLimits) -> None:
        self.limits = limits

    async def acquire(
        self, *, clinic_id: str, priority: int = 0, on_position: Callable[[int], None] | None = None
    ) -> StreamLease:
        """Wait for a slot; ``on_position`` hears the 1-based queue position
        each time it changes. Cancelling the wait removes the ticket."""
        ticket = uuid.uuid4().hex
        last_position: int | None = None
        queued = False  # counted in voiceai_engine_queue_length
        try:
            while True:
                region, position = await self._try_acquire(ticket, clinic_id, priority)
                if position < 0:
                    raise EngineError(
                        "Too many sessions are waiting for the speech engine.", code="engine_queue_full",
                        retryable=True,
                    )  # fmt: skip
                if region is not None:
                    return StreamLease(lease_id=ticket, region=region, clinic_id=clinic_id)
                if not queued:
                    queued = True
                    ENGINE_QUEUE_LENGTH.inc()
                if position != last_position and on_position is not None:
                    on_position(position)
                last_position = position
                # Each poll ranks the whole queue (O(waiters)), so waiters far
                # back poll less often (up to 6x slower at position 50+); the
                # jitter keeps waiters in many processes out of lockstep.
                backoff = 1 + min(position, 50) / 10
                await asyncio.sleep(self.limits.poll_seconds * backoff * random.uniform(0.5, 1.0))
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._cancel_ticket(ticket))
            raise
        finally:
            if queued:
                ENGINE_QUEUE_LENGTH.dec()

    @abc.abstractmethod
    async def _try_acquire(self, ticket: str, clinic_id: str, priority: int) -> tuple[str | None, int]: ...

    @abc.abstractmethod
    async def _cancel_ticket(self, ticket: str) -> None: ...

    @abc.abstractmethod
    async def renew(self, lease: StreamLease) -> None: ...

    @abc.abstractmethod
    async def release(self, lease: StreamLease) -> None: ...

    @abc.abstractmethod
    async def mark_region_down(self, region: str, seconds: float | None = None) -> None: ...

    @abc.abstractmethod
    async def usage(self) -> dict[str, int]:
        """Live leases per region (for tests, metrics and /readyz)."""


def _rank(tickets: list[dict], active: dict[str, int], now: float, aging: float) -> list[dict]:
    """The queue order (mirrors the Lua script): effective priority desc,
    the clinic's running streams asc, enqueue time asc, id."""

    def key(t: dict) -> tuple:
        boost = int((now - t["enq"]) // aging) if aging > 0 else 0
        return (-(t["p"] + boost), active.get(t["c"], 0), t["enq"], t["id"])

    return sorted(tickets, key=key)


class LocalEngineQuota(EngineQuota):
    """One process, no Redis: same rules, in memory, thread-safe."""

    def __init__(self, limits: QuotaLimits) -> None:
        super().__init__(limits)
        self._lock = threading.Lock()
        self._leases: dict[str, dict[str, tuple[str, float]]] = {r: {} for r in limits.regions}
        self._starts: dict[str, list[float]] = {r: [] for r in limits.regions}
        self._tickets: dict[str, dict] = {}
        self._down: dict[str, float] = {}

    async def _try_acquire(self, ticket: str, clinic_id: str, priority: int) -> tuple[str | None, int]:
        limits = self.limits
        with self._lock:
            now = time.monotonic()
            known = self._tickets.get(ticket)
            live_tickets = sum(1 for t in self._tickets.values() if t["exp"] >= now)
            if known is None and live_tickets >= limits.max_waiting:
                return None, -1
            enq = known["enq"] if known else now
            self._tickets[ticket] = {
                "id": ticket,
                "c": clinic_id,
                "p": priority,
                "enq": enq,
                "exp": now + limits.ticket_ttl_seconds,
            }
            active: dict[str, int] = {}
            for leases in self._leases.values():
                for lease_id, (clinic, expiry) in list(leases.items()):
                    if expiry < now:
                        del leases[lease_id]
                    else:
                        active[clinic] = active.get(clinic, 0) + 1
            for tid, t in list(self._tickets.items()):
                if t["exp"] < now:
                    del self._tickets[tid]
            order = _rank(list(self._tickets.values()), active, now, limits.aging_seconds)
            position = next(i for i, t in enumerate(order, 1) if t["id"] == ticket)
            # Down regions are skipped unless all are (as in the Lua script).
            up = [r for r in limits.regions if self._down.get(r, 0) <= now] or list(limits.regions)
            free = sum(max(0, limits.streams_per_region - len(self._leases[r])) for r in up)
            if position <= free:
                for region in up:
                    starts = [s for s in self._starts[region] if s > now - 1.0]
                    self._starts[region] = starts
                    if len(self._leases[region]) < limits.streams_per_region and len(starts) < limits.starts_per_second:
                        self._leases[region][ticket] = (clinic_id, now + limits.lease_ttl_seconds)
                        starts.append(now)
                        del self._tickets[ticket]
                        return region, 0
            return None, position

    async def _cancel_ticket(self, ticket: str) -> None:
        with self._lock:
            self._tickets.pop(ticket, None)

    async def renew(self, lease: StreamLease) -> None:
        with self._lock:
            expiry = time.monotonic() + self.limits.lease_ttl_seconds
            self._leases[lease.region][lease.lease_id] = (lease.clinic_id, expiry)

    async def release(self, lease: StreamLease) -> None:
        with self._lock:
            self._leases[lease.region].pop(lease.lease_id, None)

    async def mark_region_down(self, region: str, seconds: float | None = None) -> None:
        seconds = seconds if seconds is not None else self.limits.region_down_seconds
        with self._lock:
            self._down[region] = time.monotonic() + seconds

    async def usage(self) -> dict[str, int]:
        with self._lock:
            now = time.monotonic()
            return {r: sum(1 for _, exp in leases.values() if exp >= now) for r, leases in self._leases.items()}


# KEYS: none (one Redis; the key names derive from ARGV[1], the prefix).
# ARGV: prefix, ticket, clinic, priority, ticket_ttl_ms, lease_ttl_ms,
#       streams_per_region, starts_per_second, aging_ms, max_waiting, region...
# Returns {1, region} when granted, {0, position} when waiting, {0, -1}
# when the queue is full and this ticket is new.
_TRY_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix, ticket, clinic = ARGV[1], ARGV[2], ARGV[3]
local priority = tonumber(ARGV[4])
local ticket_ttl, lease_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local limit, rate, aging = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local max_waiting = tonumber(ARGV[10])
local regions = {}
for i = 11, #ARGV do regions[#regions + 1] = ARGV[i] end

local tk = prefix .. ':tickets'
local enq = now
local existing = redis.call('HGET', tk, ticket)
if existing then
  enq = cjson.decode(existing).enq
elseif redis.call('HLEN', tk) >= max_waiting then
  return {0, -1}
end
redis.call('HSET', tk, ticket, cjson.encode({c = clinic, p = priority, enq = enq, exp = now + ticket_ttl}))

local active, counts = {}, {}
for i, region in ipairs(regions) do
  local lk = prefix .. ':leases:' .. region
  redis.call('ZREMRANGEBYSCORE', lk, '-inf', now - 1)
  local members = redis.call('ZRANGE', lk, 0, -1)
  counts[i] = #members
  for _, m in ipairs(members) do
    local c = string.match(m, '|(.*)$')
    active[c] = (active[c] or 0) + 1
  end
end

local all = redis.call('HGETALL', tk)
local waiting = {}
for j = 1, #all, 2 do
  local d = cjson.decode(all[j + 1])
  if d.exp < now then
    redis.call('HDEL', tk, all[j])
  else
    d.id = all[j]
    local boost = 0
    if aging > 0 then boost = math.floor((now - d.enq) / aging) end
    d.eff = d.p + boost
    d.act = active[d.c] or 0
    waiting[#waiting + 1] = d
  end
end
table.sort(waiting, function(a, b)
  if a.eff ~= b.eff then return a.eff > b.eff end
  if a.act ~= b.act then return a.act < b.act end
  if a.enq ~= b.enq then return a.enq < b.enq end
  return a.id < b.id
end)
local position = 0
for i, d in ipairs(waiting) do
  if d.id == ticket then position = i break end
end

-- Regions marked down are skipped, unless all are: then all are tried
-- (a single-region deployment must not stop for a mark).
local up, any_up = {}, false
for i, region in ipairs(regions) do
  up[i] = redis.call('EXISTS', prefix .. ':down:' .. region) == 0
  any_up = any_up or up[i]
end
local free = 0
for i, region in ipairs(regions) do
  if up[i] or not any_up then
    free = free + math.max(0, limit - counts[i])
  end
end
if position <= free then
  for i, region in ipairs(regions) do
    if (up[i] or not any_up) and counts[i] < limit then
      local sk = prefix .. ':starts:' .. region
      redis.call('ZREMRANGEBYSCORE', sk, '-inf', now - 1000)
      if redis.call('ZCARD', sk) < rate then
        redis.call('ZADD', sk, now, ticket)
        redis.call('PEXPIRE', sk, 2000)
        redis.call('ZADD', prefix .. ':leases:' .. region, now + lease_ttl, ticket .. '|' .. clinic)
        redis.call('HDEL', tk, ticket)
        return {1, region}
      end
    end
  end
end
return {0, position}
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""


class RedisEngineQuota(EngineQuota):
    def __init__(self, limits: QuotaLimits, *, redis_url: str, prefix: str = "voiceai:engine-quota") -> None:
        super().__init__(limits)
        self.redis_url = redis_url
        self.prefix = prefix
        # redis.asyncio clients are bound to the event loop they were made on.
        self._clients: dict[int, Any] = {}

    def _redis(self) -> Any:
        import redis.asyncio as aioredis

        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            # Blocking pool, as in live_state: hundreds of streams renewing
            # leases at once wait for a connection instead of failing
            # (redis-py 8's plain pool raises past 100).
            pool = aioredis.BlockingConnectionPool.from_url(self.redis_url, max_connections=64, timeout=10)
            client = aioredis.Redis(connection_pool=pool)
            self._clients = {loop_id: client}  # older loops are gone; drop their clients
        return client

    async def _try_acquire(self, ticket: str, clinic_id: str, priority: int) -> tuple[str | None, int]:
        limits = self.limits
        granted, value = await self._redis().eval(
            _TRY_ACQUIRE, 0, self.prefix, ticket, clinic_id, priority,
            int(limits.ticket_ttl_seconds * 1000), int(limits.lease_ttl_seconds * 1000),
            limits.streams_per_region, limits.starts_per_second, int(limits.aging_seconds * 1000),
            limits.max_waiting, *limits.regions,
        )  # fmt: skip
        if int(granted) == 1:
            return (value.decode() if isinstance(value, bytes) else str(value)), 0
        return None, int(value)

    async def _cancel_ticket(self, ticket: str) -> None:
        await self._redis().hdel(f"{self.prefix}:tickets", ticket)

    def _member(self, lease: StreamLease) -> str:
        return f"{lease.lease_id}|{lease.clinic_id}"

    async def renew(self, lease: StreamLease) -> None:
        await self._redis().eval(
            _RENEW, 1, f"{self.prefix}:leases:{lease.region}", self._member(lease),
            int(self.limits.lease_ttl_seconds * 1000),
        )  # fmt: skip

    async def release(self, lease: StreamLease) -> None:
        await self._redis().zrem(f"{self.prefix}:leases:{lease.region}", self._member(lease))

    async def mark_region_down(self, region: str, seconds: float | None = None) -> None:
        seconds = seconds if seconds is not None else self.limits.region_down_seconds
        await self._redis().set(f"{self.prefix}:down:{region}", 1, px=max(1, int(seconds * 1000)))

    async def usage(self) -> dict[str, int]:
        client = self._redis()
        now_ms = int(time.time() * 1000)
        return {r: int(await client.zcount(f"{self.prefix}:leases:{r}", now_ms, "+inf")) for r in self.limits.regions}


def limits_from_settings(**overrides: Any) -> QuotaLimits:
    values: dict[str, Any] = {
        "regions": tuple(settings.AWS_TRANSCRIBE_REGIONS),
        "streams_per_region": settings.ENGINE_STREAMS_PER_REGION,
        "starts_per_second": settings.ENGINE_STARTS_PER_SECOND,
    }
    values.update(overrides)
    return QuotaLimits(**values)


@cache
def get_engine_quota() -> EngineQuota:
    """The process-wide quota: Redis-backed when REDIS_URL is set."""
    limits = limits_from_settings()
    if settings.REDIS_URL:
        return RedisEngineQuota(limits, redis_url=settings.REDIS_URL)
    return LocalEngineQuota(limits)


__all__ = [
    "EngineQuota",
    "LocalEngineQuota",
    "QuotaLimits",
    "RedisEngineQuota",
    "StreamLease",
    "get_engine_quota",
    "limits_from_settings",
]
