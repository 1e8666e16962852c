"""One producer connection's stream: the state the consumer is a shell over.

The audio hot path (``on_audio``) validates a frame, appends it to a buffer
and hands it to the engine stream — no await, no database, no thread hop.
Everything else runs at a slower cadence in this object's own tasks:

- the *ticker* (every ``min(1 s, AUDIO_FLUSH_SECONDS)``): flushes the buffer
  to storage as one part (one worker-thread hop per flush), stores the
  finals gathered since the last flush in one bulk insert, renews the lease
  in Redis, sends ``Ack`` (only persisted bytes are acknowledged), enforces
  the idle timeout;
- the *pump*: reads engine events; partials go out at once, finals wait for
  the next flush and are sent only once they are stored, so a final a client
  has seen survives any crash and is never sent twice;
- the *control listener*: channel-layer messages for this session
  (``session.ended`` from the REST API, ``stream.takeover`` from a newer
  producer).

Opening the engine, replaying audio into it (on resume and after an engine
failure) and restarting it live in ``stream_engine``. Seams for other parts
of the platform live in ``stream_seams`` (engine
opener, counters, the registry of active streams); ``send_control(payload)``
sends a JSON message (e.g. ``Queued``) to the producer, ``go_away()``
drains a stream on shutdown (flush, then close 1012 so the client resumes).
"""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import sync_to_async
from django.conf import settings

from sessions import audio_store
from sessions.audio import bytes_per_ms, ms_to_bytes
from sessions.events import session_group
from sessions.services import finals_store, stream_start
from transcription import stream_metrics
from transcription.engines.base import EngineStream, TranscriptEvent
from transcription.live_state import LiveStore
from transcription.socket_auth import StreamAuth
from transcription.stream_endings import StreamEndings
from transcription.stream_engine import MAX_ENGINE_RESTARTS, MAX_REPLAY_MS, StreamEngine  # noqa: F401 - re-exported
from transcription.stream_seams import (  # noqa: F401 - re-exported for integrations
    ACTIVE_STREAMS,
    STATS,
    StreamCounters,
    default_engine_opener,
    live_group,
    new_owner_id,
    set_engine_opener,
)
from transcription.wire import PROTOCOL_VERSION, Close, StreamError, WsSocket, parse_control, segment_payload
from voiceai.db import db_async
from voiceai.logging import get_logger

log = get_logger(__name__)

MIN_FRAME_MS = 20
MAX_FRAME_MS = 1000
# Received audio is flushed inline (reading pauses: TCP backpressure) once
# this much is unacknowledged, so with frames of at most 1 s no more than
# 4 s of audio is ever unacknowledged (the promise is 5 s).
INLINE_FLUSH_MS = 3000
MAX_TEXT_PER_SECOND = 50
VIEWER_PARTIAL_INTERVAL = 0.2  # partials to viewers are coalesced to 5/s
MAX_FLUSH_FAILURES = 5
DURATION_WARNING_SECONDS = 300  # clinicians hear of the session-length limit this early


_run_in_thread = sync_to_async(thread_sensitive=False)


_db = db_async


class ProducerStream(StreamEngine, StreamEndings):
    def __init__(
        self,
        *,
        ws: WsSocket,
        auth: StreamAuth,
        live: LiveStore,
        layer,
        owner: str,
        takeover: bool = False,
        finals_received: int | None = None,
    ) -> None:
        self.ws = ws
        self.auth = auth
        self.session = auth.session
        self.principal = auth.principal
        self.live = live
        self.layer = layer
        self.owner = owner
        self.takeover = takeover
        # Finals the client says it has received over all its connections
        # (None: it did not say); the stored ones after these are re-sent.
        self.finals_received = finals_received
        self.sample_rate = self.session.sample_rate
        self.counters = StreamCounters()
        self.meter = stream_metrics.StreamMeter(
            clinic_id=self.session.clinic_id, sample_rate=self.sample_rate, time=asyncio.get_running_loop().time
        )
        bpm = bytes_per_ms(self.sample_rate)
        self._min_frame = int(MIN_FRAME_MS * bpm)
        self._max_frame = int(MAX_FRAME_MS * bpm)
        self._inline_flush_bytes = int(INLINE_FLUSH_MS * bpm)
        self._flush_seconds = max(0.05, float(settings.AUDIO_FLUSH_SECONDS))
        self._idle_seconds = float(settings.STREAM_IDLE_TIMEOUT_SECONDS)
        # The clinic's max session duration, as bytes of audio (0: none).
        limit_s = auth.max_session_seconds
        self._max_bytes = ms_to_bytes(limit_s * 1000, self.sample_rate) if limit_s else 0
        self._warn_bytes = ms_to_bytes(max(0, limit_s - DURATION_WARNING_SECONDS) * 1000, self.sample_rate)
        self._duration_warned = False
        # Session-relative byte offsets: everything before ``durable`` is in
        # storage; ``received`` is where the next frame starts.
        self.resume_from_byte = 0
        self.durable = 0
        self.received = 0
        self._buffer = bytearray()
        self._pending_finals: list[TranscriptEvent] = []
        self._stored_ids: set[str] = set()
        # Where the last final seen (stored or pending) ends: the engine
        # restarts there on resume and after a failure.
        self._last_final_end_ms = 0
        self._segments = 0
        self._engine: EngineStream | None = None
        self._engine_ready = asyncio.Event()  # cleared while an engine restart replays
        self._engine_ready.set()
        self._flush_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._pump_task: asyncio.Task | None = None
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._last_flush = self._loop.time()
        self._acked_at_received = 0
        self._text_window = (0.0, 0)
        self._flush_failures = 0
        self._last_viewer_partial = 0.0
        self._pending_viewer_partial: dict | None = None
        self._viewer_timer: asyncio.TimerHandle | None = None
        self._viewer_send: asyncio.Task | None = None
        # Corrected by every lease renewal (≤ 1 s) and by viewer.joined.
        self._viewers_present = True
        self._channel: str | None = None
        self._ending: StreamError | None = None  # set when another task decides to close
        self._end_task: asyncio.Task | None = None
        self._done = asyncio.Event()
        self._finished = False

    # --- start -----------------------------------------------------------------

    async def start(self) -> None:
        """Claim the session, take a quota slot, find the durable offset,
        open the engine, send Begin. Raises StreamError (nothing to undo)."""
        clinic_id, session_id = self.session.clinic_id, self.session.pk
        claim = await self.live.claim(
            clinic_id=clinic_id, session_id=session_id, owner=self.owner, takeover=self.takeover
        )
        if not claim.ok:
            raise StreamError(
                Close.CONFLICT,
                "producer_active",
                "Another connection is streaming this session. Reconnect with takeover=1 to replace it.",
                retryable=True,
            )
        try:
            if not await self.live.quota_acquire(
                clinic_id=clinic_id, session_id=session_id, limit=self.auth.max_concurrent
            ):
                raise StreamError(
                    Close.QUOTA,
                    "concurrent_sessions_exceeded",
                    "The clinic's concurrent-session quota is full.",
                    retryable=True,
                )
            if claim.previous_owner and claim.previous_owner != self.owner:
                await self._group_send(
                    session_group(clinic_id, session_id), {"type": "stream.takeover", "owner": self.owner}
                )
            index = await _run_in_thread(audio_store.parts_scan)(self.session)
            self.resume_from_byte = self.durable = self.received = self._acked_at_received = index.durable_bytes
            # SessionEnded (4409) and QuotaExceeded (4429) close the socket
            # through the error map (voiceai.errors).
            started = await _db(stream_start)(
                principal=self.principal,
                session_id=session_id,
                resume_from_byte=self.durable,
                takeover=bool(claim.previous_owner),
                finals_received=self.finals_received,
            )
            self._stored_ids = started.stored_final_ids
            self._segments = started.segments
            self._last_final_end_ms = started.last_final_end_ms
            await self._open_engine_replaying(index)
            self._channel = await self.layer.new_channel() if self.layer is not None else None
            if self._channel is not None:
                await self.layer.group_add(session_group(clinic_id, session_id), self._channel)
        except BaseException:
            await self.live.release(clinic_id=clinic_id, session_id=session_id, owner=self.owner, durable_bytes=0)
            raise
        STATS.streams_active += 1
        STATS.streams_started += 1
        self.meter.started(received=self.received)
        ACTIVE_STREAMS.add(self)
        await self.ws.send_json(
            {
                "type": "Begin",
                "session_id": str(session_id),
                "protocol": PROTOCOL_VERSION,
                "sample_rate": self.sample_rate,
                "resume_from_byte": self.durable,
            }
        )
        # Finals stored after the client's connection was gone (the flush
        # after a drop), before any new transcript. Viewers had them already.
        for payload in map(segment_payload, started.unreceived_finals):
            await self.ws.send_json(payload)
        self._pump_task = self._spawn(self._pump(self._engine))
        self._spawn(self._ticker())
        if self._channel is not None:
            self._spawn(self._control_listener())
        log.info(
            "stream_started",
            session_id=str(session_id),
            clinic_id=str(clinic_id),
            resume_from_byte=self.durable,
            takeover=bool(claim.previous_owner),
            finals_resent=len(started.unreceived_finals),
        )

    def _spawn(self, coro) -> asyncio.Task:
        task = self._loop.create_task(coro)
        self._tasks.append(task)
        return task

    # --- the receive loop ------------------------------------------------------------

    async def run(self, receive) -> None:
        """Read the client until it closes, CloseStream, or a StreamError."""
        reason = "disconnected"
        try:
            while self._ending is None:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.disconnect":
                    break
                if kind != "websocket.receive":
                    continue
                data = message.get("bytes")
                if data is not None:
                    self.on_audio(data)
                    if len(self._buffer) >= self._inline_flush_bytes:
                        await self._flush_or_fail()
                    continue
                if await self.on_text(message.get("text")):
                    reason = "closed"
                    break
            if self._end_task is not None:
                # Another task ended the stream (idle, takeover, session
                # ended, engine failure); it closed the socket, which woke us.
                await self._end_task
                return
            if self._ending is not None:
                raise self._ending
        except StreamError as exc:
            await self._end_with_error(exc)
            return
        except asyncio.CancelledError:
            await self._abort("cancelled", flush=True)
            raise
        except Exception:
            log.exception("stream_failed", session_id=str(self.session.pk))
            await self._end_with_error(StreamError(Close.INTERNAL, "internal_error", "Internal error."))
            return
        if reason == "closed":
            await self.finish(reason="closed")
        else:
            await self._abort("disconnected", flush=True)

    def on_audio(self, data: bytes) -> None:
        """The hot path: no await, no I/O."""
        n = len(data)
        if n & 1:
            raise StreamError(Close.PROTOCOL, "odd_length_frame", "Audio frames hold whole 16-bit samples.")
        if n < self._min_frame:
            raise StreamError(Close.PROTOCOL, "frame_too_small", f"Audio frames hold at least {MIN_FRAME_MS} ms.")
        if n > self._max_frame:
            raise StreamError(Close.PROTOCOL, "frame_too_large", f"Audio frames hold at most {MAX_FRAME_MS} ms.")
        self._buffer += data
        self.received += n
        self._last_activity = self._loop.time()
        self.counters.frames_in += 1
        self.counters.bytes_in += n
        STATS.frames_in += 1
        STATS.bytes_in += n
        if self._engine is not None:
            self._engine.send_audio(data)

    async def on_text(self, text: str | None) -> bool:
        """A control message; True for CloseStream."""
        now = self._loop.time()
        window_start, count = self._text_window
        if now - window_start >= 1.0:
            window_start, count = now, 0
        self._text_window = (window_start, count + 1)
        if count + 1 > MAX_TEXT_PER_SECOND:
            raise StreamError(Close.PROTOCOL, "flood", "Too many control messages.")
        kind = parse_control(text)
        self._last_activity = now
        if kind == "Finalize":
            if self._engine is not None:
                await self._engine.finalize()
            await asyncio.sleep(0)  # let the pump take the finals
            await self._flush_or_fail()
        return kind == "CloseStream"

    # --- engine events ------------------------------------------------------------------

    async def _on_event(self, event: TranscriptEvent) -> None:
        self.meter.transcript(event)
        if event.is_final:
            if event.segment_id in self._stored_ids or any(
                f.segment_id == event.segment_id for f in self._pending_finals
            ):
                return
            self._pending_finals.append(event)
            self._last_final_end_ms = max(self._last_final_end_ms, event.end_ms)
            return
        payload = segment_payload(event)
        await self.ws.send_json(payload)
        self.counters.partials_out += 1
        STATS.partials_out += 1
        if not self._viewers_present:
            return  # nobody watches: no channel-layer traffic for partials
        now = self._loop.time()
        if now - self._last_viewer_partial >= VIEWER_PARTIAL_INTERVAL:
            self._last_viewer_partial = now
            self._pending_viewer_partial = None
            await self._broadcast(payload)
        else:
            self._pending_viewer_partial = payload
            if self._viewer_timer is None:
                # Trailing edge: the last partial before a pause reaches
                # viewers within the interval, not at the next 1 s tick.
                delay = VIEWER_PARTIAL_INTERVAL - (now - self._last_viewer_partial)
                self._viewer_timer = self._loop.call_later(delay, self._viewer_partial_due)

    def _viewer_partial_due(self) -> None:
        self._viewer_timer = None
        payload, self._pending_viewer_partial = self._pending_viewer_partial, None
        if payload is not None and not self._finished:
            self._last_viewer_partial = self._loop.time()
            self._viewer_send = self._loop.create_task(self._broadcast(payload))

    async def _broadcast(self, payload: dict) -> None:
        await self._group_send(
            live_group(self.session.clinic_id, self.session.pk), {"type": "transcript", "event": payload}
        )

    async def _group_send(self, group: str, message: dict) -> None:
        if self.layer is None:
            return
        try:
            await self.layer.group_send(group, message)
        except Exception:
            # Viewers miss a live event; the stored transcript is unaffected.
            log.warning("group_send_failed", session_id=str(self.session.pk))

    async def send_control(self, payload: dict) -> None:
        await self.ws.send_json(payload)

    # --- flushes ---------------------------------------------------------------------------

    async def flush(self) -> None:
        """Persist buffered audio as one part and pending finals in one
        insert, then tell the client (finals, Ack) and viewers."""
        async with self._flush_lock:
            started = time.perf_counter()
            session_id = self.session.pk
            # Ownership first: a producer that was taken over stops writing.
            await self._renew()
            data = bytes(self._buffer)
            finals = self._pending_finals[:]
            if data:
                await _run_in_thread(audio_store.part_write)(self.session, start=self.durable, data=data)
                # Frames received meanwhile were appended after ``data``.
                del self._buffer[: len(data)]
                self.durable += len(data)
            if finals:
                await _db(finals_store)(principal=self.principal, session_id=session_id, finals=finals)
                del self._pending_finals[: len(finals)]
                for final in finals:
                    self._stored_ids.add(final.segment_id)
                self._segments += len(finals)
            self._last_flush = self._loop.time()
            self._flush_failures = 0
            self.counters.flushes += 1
            STATS.flushes += 1
            STATS.bytes_durable += len(data)
            STATS.flush_seconds_total += time.perf_counter() - started
            for final in sorted(finals, key=lambda f: (f.start_ms, f.end_ms)):
                payload = segment_payload(final)
                await self.ws.send_json(payload)
                await self._broadcast(payload)
                self.counters.finals_out += 1
                STATS.finals_out += 1
            if data or self.received != self._acked_at_received:
                await self._ack()

    async def _renew(self) -> None:
        try:
            owned, viewers = await self.live.renew_status(
                clinic_id=self.session.clinic_id,
                session_id=self.session.pk,
                owner=self.owner,
                durable_bytes=self.durable,
            )
            self._viewers_present = viewers > 0
        except Exception:
            owned = True  # Redis hiccup: keep streaming; storage stays authoritative
            log.warning("lease_renew_failed", session_id=str(self.session.pk))
        if not owned:
            raise StreamError(Close.CONFLICT, "taken_over", "Another connection took this session over.")

    async def _ack(self) -> None:
        self.meter.acked(received=self.received, last_frame_at=self._last_activity)
        self._acked_at_received = self.received
        await self.ws.send_json({"type": "Ack", "audio_bytes_durable": self.durable})
        self.counters.acks_out += 1
        STATS.acks_out += 1

    async def _flush_or_fail(self) -> None:
        """Flush; on storage/DB errors retry with backoff (reading waits,
        which is backpressure), and give up with 1011 after a few."""
        while True:
            try:
                await self.flush()
                return
            except StreamError:
                raise
            except Exception:
                self._flush_failures += 1
                STATS.flush_failures += 1
                stream_metrics.storage_error("flush")
                log.warning("flush_failed", session_id=str(self.session.pk), failures=self._flush_failures)
                if self._flush_failures >= MAX_FLUSH_FAILURES:
                    raise StreamError(
                        Close.INTERNAL, "storage_unavailable", "Audio could not be stored.", retryable=True
                    ) from None
                await self.send_control(
                    {"type": "Warning", "code": "storage_retry", "message": "Storing audio is delayed."}
                )
                await asyncio.sleep(0.2 * self._flush_failures)

    async def _ticker(self) -> None:
        tick = min(1.0, self._flush_seconds)
        next_tick = self._loop.time()
        try:
            while True:
                # Absolute schedule: flush time doesn't stretch the period, so
                # Acks keep coming once a second.
                next_tick = max(next_tick + tick, self._loop.time())
                await asyncio.sleep(next_tick - self._loop.time())
                now = self._loop.time()
                if now - self._last_activity >= self._idle_seconds:
                    self._stop(StreamError(Close.IDLE, "idle_timeout", "No audio or KeepAlive received."))
                    return
                if self._max_bytes and await self._check_duration():
                    return
                if (self._buffer or self._pending_finals) and now - self._last_flush >= self._flush_seconds - 0.01:
                    await self._flush_or_fail()
                else:
                    # Between flushes: keep the lease, and Ack at least once
                    # a second while audio flows (liveness for the client).
                    await self._renew()
                    if self.received != self._acked_at_received:
                        await self._ack()
        except StreamError as exc:
            self._stop(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("stream_ticker_failed", session_id=str(self.session.pk))
            self._stop(StreamError(Close.INTERNAL, "internal_error", "Internal error."))
