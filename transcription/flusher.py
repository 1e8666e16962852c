"""How a producer stream stores what it holds, and only then tells anyone.

A flush writes the buffered audio as one part (one worker-thread hop) and
the pending finals in one bulk insert, then sends the client those finals
and an ``Ack`` of the stored offset, and publishes the finals to viewers. So
a final a client has seen survives any crash and is never sent twice, and an
Ack never covers audio that is not stored. It runs at most once a second (the
stream's ticker), inline when the buffer holds 3 s (backpressure), and at
the end — never per frame.

The finals of all the process's streams go to the database together: a
flush hands its finals to ``FinalsCommit``, which stores everything handed
to it within ``GROUP_COMMIT_SECONDS`` in one insert on one worker thread
(a group commit). One insert and one thread hop per window instead of one
per stream and second: at 250 streams each insert cost ~13 % of the core
(docs/benchmarks.md). Audio parts stay one write per stream, in parallel
worker threads: on S3 each is a network round trip, which one thread would
serialise.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async

from sessions import audio_store
from sessions.services import FinalsWrite, finals_store_many
from transcription import stream_metrics
from transcription.audio_ledger import AudioLedger
from transcription.engine_feed import MAX_REPLAY_MS
from transcription.engines.base import TranscriptEvent
from transcription.stream_registry import STATS, StreamCounters
from transcription.wire import Close, StreamError, segment_payload
from voiceai.db import db_async
from voiceai.logging import get_logger

if TYPE_CHECKING:
    from clinics.access import Principal
    from sessions.models import ConsultationSession

log = get_logger(__name__)

MAX_FLUSH_FAILURES = 5
# Stored segment ids are remembered only while an engine replay could
# produce them again (it restarts at the last final, at most this far back).
_PRUNE_AT = 256

_run_in_thread = sync_to_async(thread_sensitive=False)

# How long the first finals handed to the group commit wait for others: a
# final reaches the client and viewers at most this much later, next to the
# flush period (1 s) it already waits.
GROUP_COMMIT_SECONDS = 0.05


class FinalsCommit:
    """Stores the finals of the process's streams together: everything
    handed in within one window goes in one ``finals_store_many`` call.
    Each caller waits for its own write and gets the error if the insert
    failed (its Flusher retries, and the retry joins a later window)."""

    def __init__(self, *, window: float = GROUP_COMMIT_SECONDS) -> None:
        self.window = window
        self._queue: list[tuple[FinalsWrite, asyncio.Future[None]]] = []
        self._task: asyncio.Task | None = None

    async def store(self, write: FinalsWrite) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((write, future))
        if self._task is None:
            # Its own task: a stream cancelled while it waits does not
            # cancel the other streams' insert.
            self._task = asyncio.get_running_loop().create_task(self._commit())
        await future

    async def _commit(self) -> None:
        batch: list[tuple[FinalsWrite, asyncio.Future[None]]] = []
        try:
            while self._queue:
                await asyncio.sleep(self.window)
                batch, self._queue = self._queue, []
                try:
                    await db_async(finals_store_many)([write for write, _ in batch])
                except Exception as exc:
                    _settle(batch, exc)
                else:
                    _settle(batch, None)
                batch = []
        finally:
            self._task = None
            # Cancelled (the loop shuts down): nobody waits forever.
            for _, future in [*batch, *self._queue]:
                future.cancel()
            self._queue = []


def _settle(batch: list[tuple[FinalsWrite, asyncio.Future[None]]], error: Exception | None) -> None:
    for _, future in batch:
        if future.done():  # its stream was cancelled meanwhile
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


_commits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FinalsCommit] = weakref.WeakKeyDictionary()


def finals_commit() -> FinalsCommit:
    """The group commit of this process and event loop."""
    loop = asyncio.get_running_loop()
    commit = _commits.get(loop)
    if commit is None:
        commit = _commits[loop] = FinalsCommit()
    return commit


class FinalsBook:
    """The finals this stream has seen: stored (never sent or stored again)
    and pending (waiting for the next flush), and where the last one ends —
    where the engine restarts."""

    __slots__ = ("_pending_ids", "_stored", "last_end_ms", "pending", "segments")

    def __init__(self, *, stored: dict[str, int] | None = None, segments: int = 0, last_end_ms: int = 0) -> None:
        self._stored: dict[str, int] = dict(stored or {})  # segment id -> end_ms
        self._pending_ids: set[str] = set()
        self.pending: list[TranscriptEvent] = []
        self.segments = segments
        self.last_end_ms = last_end_ms

    def add(self, event: TranscriptEvent) -> bool:
        """Keep a new final for the next flush; False for one already seen."""
        if event.segment_id in self._stored or event.segment_id in self._pending_ids:
            return False
        self.pending.append(event)
        self._pending_ids.add(event.segment_id)
        self.last_end_ms = max(self.last_end_ms, event.end_ms)
        return True

    def stored(self, finals: list[TranscriptEvent]) -> None:
        """``finals`` (the head of ``pending``) are in the database now."""
        del self.pending[: len(finals)]
        for final in finals:
            self._pending_ids.discard(final.segment_id)
            self._stored[final.segment_id] = final.end_ms
        self.segments += len(finals)
        if len(self._stored) > _PRUNE_AT:
            # A replay starts at the last final seen, so finals ending well
            # before it can't come back: a 4-hour stream keeps a few ids,
            # not thousands.
            horizon = self.last_end_ms - MAX_REPLAY_MS
            self._stored = {sid: end for sid, end in self._stored.items() if end >= horizon}

    @property
    def remembered(self) -> int:
        return len(self._stored)


class Flusher:
    def __init__(
        self,
        *,
        ledger: AudioLedger,
        finals: FinalsBook,
        session: ConsultationSession,
        principal: Principal,
        counters: StreamCounters,
        renew: Callable[[], Awaitable[None]],
        send: Callable[[dict], Awaitable[None]],
        publish: Callable[[dict], None],
        on_ack: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self.ledger = ledger
        self.finals = finals
        self.session = session
        self.principal = principal
        self.counters = counters
        self.renew = renew
        self.send = send
        self.publish = publish
        self.on_ack = on_ack
        self.clock = clock
        self.lock = asyncio.Lock()
        self.last_flush = clock()
        self.failures = 0

    @property
    def has_work(self) -> bool:
        return bool(self.ledger.buffer) or bool(self.finals.pending)

    async def flush(self) -> None:
        """Store buffered audio as one part and pending finals in one
        insert, then tell the client (finals, Ack) and viewers."""
        async with self.lock:
            started = time.perf_counter()
            ledger = self.ledger
            # Ownership first: a producer that was taken over stops writing.
            await self.renew()
            data = ledger.unstored()
            finals = self.finals.pending[:]
            if data:
                await _run_in_thread(audio_store.part_write)(self.session, start=ledger.durable, data=data)
                ledger.stored(len(data))
            if finals:
                await finals_commit().store(FinalsWrite(self.principal, self.session.pk, finals))
                self.finals.stored(finals)
            self.last_flush = self.clock()
            self.failures = 0
            self.counters.flushes += 1
            STATS.flushes += 1
            STATS.bytes_durable += len(data)
            STATS.flush_seconds_total += time.perf_counter() - started
            for final in sorted(finals, key=lambda f: (f.start_ms, f.end_ms)):
                payload = segment_payload(final)
                await self.send(payload)
                self.publish(payload)
                self.counters.finals_out += 1
                STATS.finals_out += 1
            if data or ledger.unacked:
                await self.ack()

    async def ack(self) -> None:
        self.on_ack()
        self.ledger.mark_acked()
        await self.send({"type": "Ack", "audio_bytes_durable": self.ledger.durable})
        self.counters.acks_out += 1
        STATS.acks_out += 1

    async def flush_or_fail(self) -> None:
        """Flush; on storage/DB errors retry with backoff (reading waits,
        which is backpressure), and give up with 1011 after a few."""
        while True:
            try:
                await self.flush()
                return
            except StreamError:
                raise
            except Exception:
                self.failures += 1
                STATS.flush_failures += 1
                stream_metrics.storage_error("flush")
                log.warning("flush_failed", session_id=str(self.session.pk), failures=self.failures)
                if self.failures >= MAX_FLUSH_FAILURES:
                    raise StreamError(
                        Close.INTERNAL, "storage_unavailable", "Audio could not be stored.", retryable=True
                    ) from None
                await self.send({"type": "Warning", "code": "storage_retry", "message": "Storing audio is delayed."})
                await asyncio.sleep(0.2 * self.failures)

    def unstored_seconds(self, now: float) -> float:
        """How long the oldest unstored audio has waited (0 with none)."""
        return now - self.last_flush if self.ledger.buffer else 0.0
