"""The session relay: every cross-process event of a streaming session
(finals, coalesced partials, ``session.ended``, takeover, viewer presence)
travels through it, with a sequence number per session.

Mechanism (chosen by measurement, docs/relay.md): one Lua script per event
increments the session's counter, appends the event to a per-session Redis
Stream (the replayable log) and PUBLISHes it on a channel of the same name
(the live wake-up, carrying the event itself so the common case costs no
read round trip). Keys, under the design's session prefix:

- ``clinic:{c}:session:{s}:relay``, a hash: ``seq`` (last sequence number)
  and ``epoch`` (set when the log is created; a log that vanished — idle
  expiry, an emptied Redis — comes back with another epoch, so a subscriber
  can never mistake a new log's seq 3 for the old one's).
- ``clinic:{c}:session:{s}:events``, a Stream whose entry ids are
  ``<seq>-0``, trimmed to about ``RELAY_MAXLEN`` entries; also the name of
  the pub/sub channel (channels ignore the database number; session ids are
  UUIDs, so two deployments sharing a server never meet).

Both keys expire ``RELAY_IDLE_SECONDS`` after the session's last event, or
``RELAY_ENDED_SECONDS`` once the session has ended (``session.ended``: its
log and its control log, which no one needs for long after the end — a
viewer that comes later gets the stored finals). A clinic day ends
thousands of sessions; an hour each would keep every one of them in Redis.

Publishing: ``publish_nowait`` from the audio/engine path queues the event;
one task per process sends everything queued in a loop tick as one pipeline
(one round trip for all sessions), the next batch only after the previous
is stored, so a process's events of one session keep their order. A failed
send is retried with backoff (a connection lost mid-pipeline can store an
event twice, under two sequence numbers; finals carry segment ids).

Receiving: one reader task per process and event loop holds one pub/sub
connection subscribed to the channels of the sessions someone in the
process watches. A subscription first reads the log after ``after_seq``
(once its channel's SUBSCRIBE is confirmed, so nothing can fall between),
then takes live messages; a message whose seq skips ahead makes the reader
read the missing range from the log. After any connection error the reader
reconnects with backoff, resubscribes and every subscription catches up
from its last seq. Reads never rely on the client's socket timeout (idle
waits use an explicit read timeout; a PING proves the connection alive).

Without REDIS_URL, ``MemoryRelay`` gives the single process of ``make run``
and the tests the same semantics.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import random
import threading
import time
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from sessions.events import SESSION_ENDED
from transcription.live_state import live_state_key
from voiceai.logging import get_logger

log = get_logger(__name__)


def control_log(session_id: object) -> str:
    """Where a session's producer hears of it (``stream.takeover``,
    ``viewer.joined``, ``session.ended``): a log of its own, next to the
    viewers' one (``session_id`` itself: transcripts and the end). Viewers
    then receive every seq of their log — a gap is a loss they can see —
    and a producer never receives its own transcripts back."""
    return f"{session_id}:control"


def relay_meta_key(clinic_id: object, session_id: object) -> str:
    return f"{live_state_key(clinic_id, session_id)}:relay"


def relay_events_key(clinic_id: object, session_id: object) -> str:
    """The session's Stream, and the name of its pub/sub channel."""
    return f"{live_state_key(clinic_id, session_id)}:events"


@dataclass(frozen=True, slots=True)
class RelayEvent:
    seq: int
    event: dict


class RelayGap(Exception):
    """The subscription cannot go on without a hole: the events after
    ``last_seq`` were trimmed from the log (``trimmed``), the log is not the
    one the subscriber knew (``reset``: expired or Redis came back empty),
    or the subscriber fell too far behind (``overflow``). Resync from the
    database, then subscribe again."""

    def __init__(self, reason: str, *, last_seq: int) -> None:
        super().__init__(f"relay gap ({reason}) after seq {last_seq}")
        self.reason = reason
        self.last_seq = last_seq


class RelayUnavailable(Exception):
    """Redis could not be reached in time (subscribe, awaited publish)."""


_GAP = object()


class Subscription:
    """An async iterator of ``RelayEvent`` for one session, in seq order.

    ``start_seq``: the seq the subscription started after (the ``after_seq``
    given, or the session's last seq when none was). ``last_seq``: the last
    seq handed to the consumer, what to resume from. ``epoch`` identifies
    the log (``None`` while the session has none)."""

    def __init__(
        self,
        relay: SessionRelay,
        key: str,
        *,
        after_seq: int | None,
        epoch: str | None,
        queue_size: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._relay = relay
        self.key = key
        self.epoch = epoch
        self.start_seq = after_seq if after_seq is not None else 0
        self.last_seq = self.start_seq
        # Highest seq queued; None until the first catch-up says where to start.
        self._queued_seq: int | None = after_seq
        self._queue: collections.deque[RelayEvent] = collections.deque()
        self._queue_size = queue_size
        self._loop = loop
        self._waiter: asyncio.Future | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._needs_sync = True
        self.ready: asyncio.Future = loop.create_future()

    # --- consumer side -------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> RelayEvent:
        while True:
            if self._queue:
                item = self._queue.popleft()
                self.last_seq = item.seq
                return item
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._wake()
            await self._relay._discard(self)

    # --- relay side ----------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        """End the subscription with ``error`` once the queue is consumed
        (an overflow drops the queue: that is the memory it must free)."""
        if self._error is None and not self._closed:
            self._error = error
            if isinstance(error, RelayGap) and error.reason == "overflow":
                self._queue.clear()
            self._relay._forget(self)
            if not self.ready.done():
                self.ready.set_exception(error)
                self.ready.exception()  # retrieved by subscribe(); never "never retrieved"
            self._wake()

    @property
    def active(self) -> bool:
        return self._error is None and not self._closed

    def _offer(self, epoch: str, seq: int, event: dict, *, from_log: bool = False) -> object:
        """Queue one event; ``_GAP`` when events before it are missing.
        Events read from the log may exceed the live bound: the log itself
        is bounded (RELAY_MAXLEN), and a resume must be able to take it."""
        if not self.active:
            return None
        if self.epoch is None:
            if self._queued_seq:
                self._fail(RelayGap("reset", last_seq=self._queued_seq))
                return None
            self.epoch = epoch
        elif epoch != self.epoch:
            self._fail(RelayGap("reset", last_seq=self._queued_seq or 0))
            return None
        queued = self._queued_seq or 0
        if seq <= queued:
            return None  # already delivered (catch-up and live overlap)
        if seq != queued + 1:
            return _GAP
        if len(self._queue) >= self._queue_size and not from_log:
            self._fail(RelayGap("overflow", last_seq=self.last_seq))
            return None
        self._queued_seq = seq
        self._queue.append(RelayEvent(seq, event))
        self._wake()
        return None

    def _apply_catch_up(self, epoch: str, last: int, entries: list[tuple[int, dict]]) -> None:
        """What the log holds after this subscription's last queued seq."""
        self._needs_sync = False
        if not self.active:
            return
        if self._queued_seq is None:  # a new subscription "from now on"
            self.epoch = epoch or None
            self.start_seq = self.last_seq = self._queued_seq = last
        elif not epoch:
            if self._queued_seq or self.epoch is not None:
                self._fail(RelayGap("reset", last_seq=self._queued_seq))
                return
        elif (self.epoch is not None and epoch != self.epoch) or self._queued_seq > last:
            self._fail(RelayGap("reset", last_seq=self._queued_seq))
            return
        else:
            self.epoch = epoch
            if last > self._queued_seq and (not entries or entries[0][0] != self._queued_seq + 1):
                self._fail(RelayGap("trimmed", last_seq=self._queued_seq))
                return
            for seq, event in entries:
                if self._offer(epoch, seq, event, from_log=True) is _GAP:
                    self._fail(RelayGap("trimmed", last_seq=self._queued_seq))
                    return
        if not self.ready.done():
            self.ready.set_result(None)


class SessionRelay:
    """The interface; see the module docstring for the semantics."""

    def publish_nowait(self, clinic_id: object, session_id: object, event: dict) -> None:
        """Queue ``event``; sent with everything else queued in this tick."""
        raise NotImplementedError

    async def publish(self, clinic_id: object, session_id: object, event: dict) -> int:
        """Publish and wait until the event is stored; returns its seq."""
        raise NotImplementedError

    async def subscribe(
        self, clinic_id: object, session_id: object, *, after_seq: int | None = None, epoch: str | None = None
    ) -> Subscription:
        """Events with seq > ``after_seq`` (retained ones first, then live
        ones), or from the session's current last seq on when ``None``.
        Pass the ``epoch`` the caller saw to be told (``RelayGap("reset")``)
        when the log is not that one any more. Raises ``RelayGap`` when the
        events asked for are gone, ``RelayUnavailable`` when Redis can't be
        reached in time."""
        raise NotImplementedError

    async def _discard(self, sub: Subscription) -> None:
        raise NotImplementedError

    def _forget(self, sub: Subscription) -> None:
        """Stop delivering to ``sub`` (failed); no I/O."""
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


def _settings_int(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


# --- Redis -------------------------------------------------------------------------

# KEYS: meta hash, stream [, the session's other log's meta hash and stream].
# ARGV: event JSON, maxlen, expiry ms, ended expiry ms (0: not the end).
# The end marks the log (``ended`` in its hash) so later events (a viewer
# leaving) don't give it back the idle expiry; the other log, if it
# exists, is shortened with it.
_PUBLISH = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  local now = redis.call('TIME')
  epoch = now[1] .. '.' .. now[2]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'e', ARGV[1])
if ARGV[4] ~= '0' then
  redis.call('HSET', KEYS[1], 'ended', ARGV[4])
  if #KEYS > 2 and redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('HSET', KEYS[3], 'ended', ARGV[4])
    redis.call('PEXPIRE', KEYS[3], ARGV[4])
    redis.call('PEXPIRE', KEYS[4], ARGV[4])
  end
end
local ttl = redis.call('HGET', KEYS[1], 'ended') or ARGV[3]
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PUBLISH', KEYS[2], epoch .. ' ' .. seq .. ' ' .. ARGV[1])
return seq
"""


def _other_log(session_id: object) -> str:
    """The session's other log: the control log of its viewers' log, and
    the viewers' log of its control log."""
    name = str(session_id)
    return name.removesuffix(":control") if name.endswith(":control") else control_log(name)


def _publish_keys(clinic_id: object, session_id: object, event: dict, ended_seconds: int) -> tuple[list[str], int]:
    """The publish script's keys and its ended expiry (ms, 0: not the end)."""
    keys = [relay_meta_key(clinic_id, session_id), relay_events_key(clinic_id, session_id)]
    if event.get("type") != SESSION_ENDED:
        return keys, 0
    other = _other_log(session_id)
    return [*keys, relay_meta_key(clinic_id, other), relay_events_key(clinic_id, other)], ended_seconds * 1000


# KEYS: meta hash, stream. ARGV: after seq, max entries.
_RANGE = """
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if not meta[1] then
  return {'', 0, {}}
end
return {meta[1], tonumber(meta[2]), redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])}
"""


def _entries(raw: Iterable) -> list[tuple[int, dict]]:
    return [(int(entry_id.split("-", 1)[0]), json.loads(fields[1])) for entry_id, fields in raw]


@dataclass(slots=True)
class _Outgoing:
    keys: list[str]
    ended_ms: int
    payload: str
    future: asyncio.Future | None
    queued_at: float


class RedisRelay(SessionRelay):
    """One per process and event loop (redis.asyncio connections belong to
    one loop). The timing arguments exist so tests can make every timeout
    in play short; production uses the defaults."""

    def __init__(
        self,
        url: str,
        *,
        maxlen: int | None = None,
        idle_seconds: int | None = None,
        ended_seconds: int | None = None,
        queue_size: int | None = None,
        socket_timeout: float = 5.0,
        read_timeout: float = 5.0,
        ping_after: float = 10.0,
        backoff_max: float = 5.0,
        subscribe_timeout: float = 10.0,
        publish_timeout: float = 30.0,
        outbox_max: int = 100_000,
    ) -> None:
        import redis.asyncio as redis_asyncio
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._maxlen = maxlen or _settings_int("RELAY_MAXLEN", 1000)
        self._expiry_ms = (idle_seconds or _settings_int("RELAY_IDLE_SECONDS", 3600)) * 1000
        self._ended_seconds = ended_seconds or _settings_int("RELAY_ENDED_SECONDS", 120)
        self._queue_size = queue_size or _settings_int("RELAY_QUEUE_SIZE", 1000)
        self._read_timeout = read_timeout
        self._ping_after = ping_after
        self._backoff_max = backoff_max
        self._subscribe_timeout = subscribe_timeout
        self._publish_timeout = publish_timeout
        self._outbox_max = outbox_max
        common = {"decode_responses": True, "socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
        self._redis = redis_asyncio.Redis.from_url(url, **common)
        # The reader's connection never retries inside redis-py: a silent
        # reconnect would resubscribe without the catch-up that makes it
        # lossless. Any error ends that connection and the reader's own
        # loop reconnects and catches every subscription up.
        self.name = f"voiceai-relay-{uuid.uuid4().hex[:12]}"  # CLIENT LIST shows the reader by it
        self._pubsub_client = redis_asyncio.Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), socket_keepalive=True, client_name=self.name, **common
        )
        self._publish_script = self._redis.register_script(_PUBLISH)
        self._range_script = self._redis.register_script(_RANGE)
        self._loop = asyncio.get_running_loop()
        self._subs: dict[str, set[Subscription]] = {}
        self._outbox: list[_Outgoing] = []
        self._flusher: asyncio.Task | None = None
        self._reader: asyncio.Task | None = None
        self._pubsub: Any = None
        # Private channel: keeps the connection subscribed while no session
        # is watched, and its confirmation tells the reader it is connected.
        self._own_channel = f"relay:{self.name}"
        self._background: set[asyncio.Task] = set()
        self._closing = False
        self.reconnects = 0  # connections the reader had to replace (tests, metrics)
        self.batches_sent = 0  # publish pipelines (round trips), for the bench and tests

    # --- publishing ----------------------------------------------------------

    def publish_nowait(self, clinic_id: object, session_id: object, event: dict) -> None:
        self._enqueue(clinic_id, session_id, event, None)

    async def publish(self, clinic_id: object, session_id: object, event: dict) -> int:
        future = self._loop.create_future()
        self._enqueue(clinic_id, session_id, event, future)
        return await future

    def _enqueue(self, clinic_id: object, session_id: object, event: dict, future: asyncio.Future | None) -> None:
        keys, ended_ms = _publish_keys(clinic_id, session_id, event, self._ended_seconds)
        self._outbox.append(
            _Outgoing(
                keys,
                ended_ms,
                json.dumps(event, separators=(",", ":")),
                future,
                self._loop.time(),
            )
        )
        if len(self._outbox) > self._outbox_max:
            self._drop(self._outbox[: -self._outbox_max], reason="outbox_full")
            del self._outbox[: -self._outbox_max]
        if self._flusher is None or self._flusher.done():
            self._flusher = self._loop.create_task(self._flush())

    async def _flush(self) -> None:
        failures = 0
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                await self._send(batch)
                failures = 0
            except Exception as exc:
                failures += 1
                now = self._loop.time()
                expired = [item for item in batch if now - item.queued_at > self._publish_timeout]
                self._drop(expired, reason="timeout")
                self._outbox[:0] = [item for item in batch if now - item.queued_at <= self._publish_timeout]
                delay = self._backoff(failures)
                log.warning(
                    "relay_publish_retry", error=type(exc).__name__, events=len(self._outbox), delay_s=round(delay, 2)
                )
                await asyncio.sleep(delay)

    async def _send(self, batch: list[_Outgoing]) -> None:
        from redis.exceptions import NoScriptError

        todo = batch
        for _ in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in todo:
                    pipe.evalsha(
                        self._publish_script.sha,
                        len(item.keys),
                        *item.keys,
                        item.payload,
                        self._maxlen,
                        self._expiry_ms,
                        item.ended_ms,
                    )
                results = await pipe.execute(raise_on_error=False)
            self.batches_sent += 1
            retry = []
            for item, result in zip(todo, results, strict=True):
                if isinstance(result, NoScriptError):
                    retry.append(item)  # not run: safe to send again
                elif isinstance(result, Exception):
                    log.error("relay_publish_failed", error=type(result).__name__)
                    if item.future is not None and not item.future.done():
                        item.future.set_exception(RelayUnavailable(type(result).__name__))
                elif item.future is not None and not item.future.done():
                    item.future.set_result(int(result))
            if not retry:
                return
            # A Redis that restarted has lost the script cache.
            await self._redis.script_load(_PUBLISH)
            todo = retry
        raise RelayUnavailable("publish script could not be loaded")

    def _drop(self, items: list[_Outgoing], *, reason: str) -> None:
        if not items:
            return
        log.error("relay_publish_dropped", events=len(items), reason=reason)
        for item in items:
            if item.future is not None and not item.future.done():
                item.future.set_exception(RelayUnavailable(reason))

    def _backoff(self, failures: int) -> float:
        return min(self._backoff_max, 0.05 * 2 ** min(failures, 10)) * random.uniform(0.5, 1.0)

    # --- subscribing ---------------------------------------------------------

    async def subscribe(
        self, clinic_id: object, session_id: object, *, after_seq: int | None = None, epoch: str | None = None
    ) -> Subscription:
        self._ensure_reader()
        key = relay_events_key(clinic_id, session_id)
        sub = Subscription(self, key, after_seq=after_seq, epoch=epoch, queue_size=self._queue_size, loop=self._loop)
        self._subs.setdefault(key, set()).add(sub)
        pubsub = self._pubsub
        if pubsub is not None:
            # The reader catches the subscription up when Redis confirms the
            # SUBSCRIBE; if this send fails, its reconnect subscribes anew.
            with contextlib.suppress(Exception):
                await pubsub.subscribe(key)
        try:
            await asyncio.wait_for(asyncio.shield(sub.ready), self._subscribe_timeout)
        except TimeoutError:
            await sub.aclose()
            raise RelayUnavailable("subscribe timed out") from None
        except BaseException:
            await sub.aclose()
            raise
        return sub

    def _forget(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.key]
                task = self._loop.create_task(self._unsubscribe(sub.key))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _discard(self, sub: Subscription) -> None:
        self._forget(sub)

    async def _unsubscribe(self, key: str) -> None:
        pubsub = self._pubsub
        if pubsub is not None and key not in self._subs:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe(key)

    # --- the reader ----------------------------------------------------------

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = self._loop.create_task(self._read_forever())
            self._reader.add_done_callback(self._reader_done)

    def _reader_done(self, task: asyncio.Task) -> None:
        if self._closing:
            return
        # Never a silently dead reader: a bug that escaped the loop below is
        # logged and the reader starts again (every subscription catches up).
        if task.cancelled():
            return  # aclose() or the loop shutting down
        error = task.exception()
        log.error("relay_reader_died", error=type(error).__name__ if error else "returned")
        self._loop.call_later(self._backoff(3), self._ensure_reader)

    async def _read_forever(self) -> None:
        failures = 0
        while not self._closing:
            connected = asyncio.Event()
            try:
                await self._read(connected)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if connected.is_set():
                    failures = 0
                    self.reconnects += 1
                failures += 1
                delay = self._backoff(failures)
                log.warning("relay_reader_reconnecting", error=type(exc).__name__, delay_s=round(delay, 2))
                await asyncio.sleep(delay)
            finally:
                await self._drop_pubsub()

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _read(self, connected: asyncio.Event) -> None:
        pubsub = self._pubsub_client.pubsub()
        # Connected before anyone else may send on it (a concurrent first
        # connect would open two connections).
        await pubsub.connect()
        for subs in self._subs.values():
            for sub in subs:
                sub._needs_sync = True
        self._pubsub = pubsub
        await pubsub.subscribe(self._own_channel, *self._subs)
        last_heard = self._loop.time()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self._read_timeout)
            now = self._loop.time()
            if message is None:
                # Idle: prove the connection alive rather than trusting a
                # socket that may be gone without a reset.
                if now - last_heard > self._ping_after * 3:
                    raise ConnectionError("relay connection silent")
                if now - last_heard > self._ping_after and not pinged:
                    await pubsub.ping()
                    pinged = True
                continue
            last_heard, pinged = now, False
            kind = message["type"]
            if kind == "message":
                await self._on_message(message["channel"], message["data"])
            elif kind == "subscribe":
                if message["channel"] == self._own_channel:
                    connected.set()
                for sub in list(self._subs.get(message["channel"], ())):
                    if sub._needs_sync:
                        await self._catch_up(sub)

    async def _on_message(self, key: str, data: str) -> None:
        subs = self._subs.get(key)
        if not subs:
            return
        epoch, seq_text, payload = data.split(" ", 2)
        seq = int(seq_text)
        event = json.loads(payload)
        for sub in list(subs):
            if not sub._needs_sync and sub._offer(epoch, seq, event) is _GAP:
                await self._catch_up(sub)

    async def _catch_up(self, sub: Subscription) -> None:
        if not sub.active:
            return
        meta = sub.key.removesuffix(":events") + ":relay"
        epoch, last, raw = await self._range_script(keys=[meta, sub.key], args=[sub._queued_seq or 0, self._maxlen * 2])
        sub._apply_catch_up(str(epoch), int(last), _entries(raw))

    async def aclose(self) -> None:
        self._closing = True
        for task in (self._reader, self._flusher):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self._drop_pubsub()
        await self._redis.aclose()
        await self._pubsub_client.aclose()


# --- in memory -----------------------------------------------------------------------


@dataclass
class _MemoryLog:
    epoch: str
    seq: int
    entries: collections.deque
    touched: float
    lifetime: float  # seconds after ``touched``: the idle expiry, or the ended one


class MemoryRelay(SessionRelay):
    """One per process, shared by every event loop and thread (``make run``
    serves sockets and sync views in one process): same semantics, a lock
    and ``call_soon_threadsafe`` instead of Redis."""

    def __init__(
        self, *, maxlen: int | None = None, idle_seconds: int | None = None, ended_seconds: int | None = None
    ) -> None:
        self._maxlen = maxlen
        self._idle_seconds = idle_seconds
        self._ended_seconds = ended_seconds
        self._logs: dict[str, _MemoryLog] = {}
        self._subs: dict[str, set[Subscription]] = {}
        self._lock = threading.Lock()
        self._epochs = itertools.count(1)
        self._swept = time.monotonic()

    def _limits(self) -> tuple[int, int]:
        return (
            self._maxlen or _settings_int("RELAY_MAXLEN", 1000),
            self._idle_seconds or _settings_int("RELAY_IDLE_SECONDS", 3600),
        )

    def publish_sync(self, clinic_id: object, session_id: object, event: dict) -> int:
        key = relay_events_key(clinic_id, session_id)
        # A JSON round trip, as through Redis: subscribers never share the
        # publisher's dict, and what can't be serialised fails here too.
        event = json.loads(json.dumps(event))
        maxlen, idle = self._limits()
        ended = self._ended_seconds or _settings_int("RELAY_ENDED_SECONDS", 120)
        now = time.monotonic()
        with self._lock:
            entry = self._logs.get(key)
            if entry is None or now - entry.touched > entry.lifetime:
                entry = self._logs[key] = _MemoryLog(
                    f"m{next(self._epochs)}", 0, collections.deque(maxlen=maxlen), now, idle
                )
            entry.seq += 1
            entry.touched = now
            entry.entries.append((entry.seq, event))
            if event.get("type") == SESSION_ENDED:
                entry.lifetime = ended
                other = self._logs.get(relay_events_key(clinic_id, _other_log(session_id)))
                if other is not None:
                    other.lifetime, other.touched = ended, now
            for sub in list(self._subs.get(key, ())):
                try:
                    sub._loop.call_soon_threadsafe(self._deliver, sub, entry.epoch, entry.seq, event)
                except RuntimeError:  # its event loop is closed: nobody is reading
                    self._subs[key].discard(sub)
            if now - self._swept > ended:
                self._sweep(now)
            return entry.seq

    def position(self, clinic_id: object, session_id: object) -> tuple[int, str | None]:
        with self._lock:
            entry = self._logs.get(relay_events_key(clinic_id, session_id))
            if entry is None or time.monotonic() - entry.touched > entry.lifetime:
                return 0, None
            return entry.seq, entry.epoch

    def _sweep(self, now: float) -> None:
        """Forget expired logs, as Redis expires them (called under the lock)."""
        self._swept = now
        for key in [key for key, entry in self._logs.items() if now - entry.touched > entry.lifetime]:
            del self._logs[key]

    def publish_nowait(self, clinic_id: object, session_id: object, event: dict) -> None:
        self.publish_sync(clinic_id, session_id, event)

    async def publish(self, clinic_id: object, session_id: object, event: dict) -> int:
        return self.publish_sync(clinic_id, session_id, event)

    def _deliver(self, sub: Subscription, epoch: str, seq: int, event: dict) -> None:
        if not sub._needs_sync and sub._offer(epoch, seq, event) is _GAP:
            self._catch_up(sub)

    def _catch_up(self, sub: Subscription) -> None:
        with self._lock:
            entry = self._logs.get(sub.key)
            if entry is None or time.monotonic() - entry.touched > entry.lifetime:
                epoch, last, entries = "", 0, []
            else:
                after = sub._queued_seq or 0
                epoch, last, entries = entry.epoch, entry.seq, [item for item in entry.entries if item[0] > after]
        sub._apply_catch_up(epoch, last, entries)

    async def subscribe(
        self, clinic_id: object, session_id: object, *, after_seq: int | None = None, epoch: str | None = None
    ) -> Subscription:
        key = relay_events_key(clinic_id, session_id)
        loop = asyncio.get_running_loop()
        sub = Subscription(self, key, after_seq=after_seq, epoch=epoch, queue_size=self._queue_size(), loop=loop)
        with self._lock:
            self._subs.setdefault(key, set()).add(sub)
        self._catch_up(sub)
        await sub.ready
        return sub

    @staticmethod
    def _queue_size() -> int:
        return _settings_int("RELAY_QUEUE_SIZE", 1000)

    def _forget(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.key]

    async def _discard(self, sub: Subscription) -> None:
        self._forget(sub)


_memory_relay = MemoryRelay()
_redis_relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisRelay] = weakref.WeakKeyDictionary()
_sync_lock = threading.Lock()
_sync_client: Any = None


def get_relay() -> SessionRelay:
    """The relay of this process and event loop."""
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return _memory_relay
    loop = asyncio.get_running_loop()
    relay = _redis_relays.get(loop)
    if relay is None:
        relay = _redis_relays[loop] = RedisRelay(url)
    return relay


def _sync_redis(url: str) -> tuple[Any, Any]:
    """The process's synchronous client and its publish script."""
    global _sync_client
    with _sync_lock:
        if _sync_client is None or _sync_client[0] != url:
            import redis

            client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
            _sync_client = (url, client, client.register_script(_PUBLISH))
        _, client, script = _sync_client
    return client, script


def position_sync(clinic_id: object, session_id: object) -> tuple[int, str | None]:
    """The session's last seq and its log's epoch (0, None: no log yet), for
    synchronous code that must subscribe from exactly here afterwards: a
    connect reads it inside the transaction that checks the session is
    open, so an end committed after that check is an event after it."""
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return _memory_relay.position(clinic_id, session_id)
    client, _ = _sync_redis(url)
    epoch, seq = client.hmget(relay_meta_key(clinic_id, session_id), "epoch", "seq")
    return (int(seq or 0), epoch) if epoch else (0, None)


def publish_sync(clinic_id: object, session_id: object, event: dict) -> int:
    """Publish from synchronous code (the REST end, services); returns the
    seq. Raises on a Redis error: the caller decides what a lost
    notification means (a committed end stays committed)."""
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return _memory_relay.publish_sync(clinic_id, session_id, event)
    _, script = _sync_redis(url)
    payload = json.dumps(event, separators=(",", ":"))
    maxlen, idle = _settings_int("RELAY_MAXLEN", 1000), _settings_int("RELAY_IDLE_SECONDS", 3600)
    keys, ended_ms = _publish_keys(clinic_id, session_id, event, _settings_int("RELAY_ENDED_SECONDS", 120))
    seq = script(keys=keys, args=[payload, maxlen, idle * 1000, ended_ms])
    return int(seq)
