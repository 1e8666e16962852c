"""One producer connection's stream: the state the consumer is a shell over.

It is composed of parts, each with its own tests:

- ``AudioLedger`` (audio_ledger): frame validation, the unstored buffer and
  the session offsets — the hot path;
- ``EngineFeed`` (engine_feed): the engine, opened and replayed from the
  last final, its event pump and restarts;
- ``FinalsBook`` and ``Flusher`` (flusher): finals seen and pending, and the
  once-a-second store → tell (finals, Ack) cycle;
- the session relay (relay): finals and coalesced partials out to viewers,
  control events in.

The stream itself holds the life cycle (``StreamState``), the receive loop,
partials to the client and (coalesced) to viewers, the *ticker* (flush,
lease renewal, idle timeout, the clinic's session-length limit) and the
*control listener* (the session's relay events: ``session.ended`` from the
REST API, ``stream.takeover`` from a newer producer, ``viewer.joined``),
and how a stream ends:

- CloseStream or the session ended: drain the engine, flush, seal the
  session (WAV, sha256, transcript JSON), Metadata, 1000;
- a drop: flush what arrived, keep the session open for a resume;
- an error or a takeover: Error, then the close code;
- server shutdown (``go_away``): flush, Ack, 1012 so the client resumes.

Book-keeping (lease release, audit row, counters) happens before the final
close, so whoever sees the close also sees its effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Coroutine
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from clinics.access import access_session
from sessions.events import SESSION_ENDED
from sessions.models import OPEN_STATUSES
from sessions.services import session_fail, session_seal, stream_stop
from transcription import stream_metrics
from transcription.audio_ledger import AudioLedger
from transcription.connect import ProducerConnect
from transcription.engine_feed import EngineFeed, EngineOpener, default_engine_opener
from transcription.engines.base import EngineError, TranscriptEvent
from transcription.flusher import FinalsBook, Flusher
from transcription.live_state import LiveStore
from transcription.relay import RelayGap, RelayUnavailable, SessionRelay, Subscription, control_log
from transcription.socket_auth import StreamAuth
from transcription.stream_registry import ACTIVE_STREAMS, STATS, StreamCounters
from transcription.wire import PROTOCOL_VERSION, Close, StreamError, WsSocket, parse_control, segment_payload
from voiceai.db import db_async
from voiceai.logging import get_logger

log = get_logger(__name__)

MAX_TEXT_PER_SECOND = 50
VIEWER_PARTIAL_INTERVAL = 0.2  # partials to viewers are coalesced to 5/s
ENGINE_DRAIN_SECONDS = 10.0


class StreamState(enum.Enum):
    STARTING = "starting"  # claiming, loading, opening the engine
    STREAMING = "streaming"  # the receive loop runs
    ENDING = "ending"  # another task decided to end it; the loop is woken
    CLOSED = "closed"  # book-keeping done, the socket is closed


class ViewerPartials:
    """Partials to viewers, coalesced to one per interval with a trailing
    edge: the last partial before a pause still reaches viewers within the
    interval, not at the next tick."""

    def __init__(self, publish, loop: asyncio.AbstractEventLoop) -> None:
        self._publish = publish
        self._loop = loop
        self._last = 0.0
        self._pending: dict | None = None
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, payload: dict) -> None:
        now = self._loop.time()
        if now - self._last >= VIEWER_PARTIAL_INTERVAL:
            self._last = now
            self._pending = None
            self._publish(payload)
            return
        self._pending = payload
        if self._timer is None:
            self._timer = self._loop.call_later(VIEWER_PARTIAL_INTERVAL - (now - self._last), self._due)

    def _due(self) -> None:
        self._timer = None
        payload, self._pending = self._pending, None
        if payload is not None:
            self._last = self._loop.time()
            self._publish(payload)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = None


class ProducerStream:
    def __init__(
        self,
        *,
        ws: WsSocket,
        auth: StreamAuth,
        live: LiveStore,
        relay: SessionRelay,
        owner: str,
        engine_opener: EngineOpener = default_engine_opener,
    ) -> None:
        self.ws = ws
        self.auth = auth
        self.session = auth.session
        self.principal = auth.principal
        self.engine_name = auth.engine_name
        self.live = live
        self.relay = relay
        self.owner = owner
        self.sample_rate = self.session.sample_rate
        self.state = StreamState.STARTING
        self.counters = StreamCounters()
        self._loop = asyncio.get_running_loop()
        self.meter = stream_metrics.StreamMeter(
            clinic_id=self.session.clinic_id, sample_rate=self.sample_rate, time=self._loop.time
        )
        self._flush_seconds = max(0.05, float(settings.AUDIO_FLUSH_SECONDS))
        self._idle_seconds = float(settings.STREAM_IDLE_TIMEOUT_SECONDS)
        self.ledger = AudioLedger(sample_rate=self.sample_rate, max_session_seconds=auth.max_session_seconds)
        self.finals = FinalsBook()
        self.flusher = Flusher(
            ledger=self.ledger,
            finals=self.finals,
            session=self.session,
            principal=self.principal,
            counters=self.counters,
            renew=self._renew,
            send=self.ws.send_json,
            publish=self._publish_transcript,
            on_ack=self._on_ack,
            clock=self._loop.time,
        )
        self.feed = EngineFeed(
            host=self,
            opener=engine_opener,
            ledger=self.ledger,
            flush_lock=self.flusher.lock,
            language=auth.language,
            vocabulary_name=auth.vocabulary_name,
            last_final_end_ms=lambda: self.finals.last_end_ms,
            on_event=self._on_event,
            on_failure=self._stop,
            on_restart=self._on_engine_restart,
        )
        self._viewer_partials = ViewerPartials(self._publish_transcript, self._loop)
        # Corrected by every lease renewal (≤ 1 s) and by viewer.joined.
        self._viewers_present = True
        self._last_activity = self._loop.time()
        self._text_window = (0.0, 0)
        self._duration_warned = False
        self._control: Subscription | None = None
        self._replaced_owner = ""  # whose lease this stream's claim took, if anyone's
        self._tasks: list[asyncio.Task] = []
        self._pump_task: asyncio.Task | None = None
        self._ending: StreamError | None = None  # why another task ends the stream
        self._end_task: asyncio.Task | None = None
        self._done = asyncio.Event()

    # --- start ------------------------------------------------------------------------------

    async def start(self, connected: ProducerConnect) -> None:
        """Listen for the session's control events from where the connect
        left the relay, open the engine, send Begin. ``connected``: the
        connect's one worker-thread call (lease and slot held, session live,
        stored length known). Raises StreamError (the lease is released)."""
        clinic_id, session_id = self.session.clinic_id, self.session.pk
        claim, started = connected.claim, connected.started
        self._replaced_owner = claim.previous_owner
        self.ledger.start_at(connected.parts.durable_bytes)
        # Stored finals a replay could produce again, and where the last ends.
        self.finals = self.flusher.finals = FinalsBook(
            stored=started.recent_finals, segments=started.segments, last_end_ms=started.last_final_end_ms
        )
        try:
            try:
                self._control = await self.relay.subscribe(
                    clinic_id, control_log(session_id), after_seq=connected.relay_seq, epoch=connected.relay_epoch
                )
            except RelayGap:
                # The log changed since the connect read it (Redis restarted
                # empty): the control listener listens anew and asks the
                # database whether the session ended meanwhile.
                self._control = None
            if claim.previous_owner and claim.previous_owner != self.owner:
                self.relay.publish_nowait(
                    clinic_id, control_log(session_id), {"type": "stream.takeover", "owner": self.owner}
                )
            await self.feed.open_replaying(connected.parts)
        except BaseException as exc:
            if self._control is not None:
                await self._control.aclose()
            await self.live.release(
                clinic_id=clinic_id, session_id=session_id, owner=self.owner, durable_bytes=self.ledger.durable
            )
            if isinstance(exc, StreamError) and exc.ends_session:
                await self._fail_session(exc)
            raise
        self.state = StreamState.STREAMING
        STATS.streams_active += 1
        STATS.streams_started += 1
        self.meter.started(received=self.ledger.received)
        ACTIVE_STREAMS.add(self)
        await self.ws.send_json(
            {
                "type": "Begin",
                "session_id": str(session_id),
                "protocol": PROTOCOL_VERSION,
                "sample_rate": self.sample_rate,
                "resume_from_byte": self.ledger.durable,
            }
        )
        # Finals stored after the client's connection was gone (the flush
        # after a drop), before any new transcript. Viewers had them already.
        for payload in map(segment_payload, started.unreceived_finals):
            await self.ws.send_json(payload)
        self._pump_task = self._spawn(self.feed.pump())
        self._spawn(self._ticker())
        self._spawn(self._control_listener())
        log.info(
            "stream_started",
            session_id=str(session_id),
            clinic_id=str(clinic_id),
            resume_from_byte=self.ledger.durable,
            takeover=bool(claim.previous_owner),
            finals_resent=len(started.unreceived_finals),
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task:
        task = self._loop.create_task(coro)
        self._tasks.append(task)
        return task

    # --- what other parts of the platform read ------------------------------------------

    @property
    def durable(self) -> int:
        return self.ledger.durable

    @property
    def received(self) -> int:
        return self.ledger.received

    @property
    def finished(self) -> bool:
        return self.state is StreamState.CLOSED or self._ending is not None

    def unstored_seconds(self) -> float:
        """Seconds the oldest unstored audio has waited (durable-ack lag)."""
        if self.state is not StreamState.STREAMING:
            return 0.0
        return self.flusher.unstored_seconds(self._loop.time())

    async def send_control(self, payload: dict) -> None:
        await self.ws.send_json(payload)

    # --- the receive loop -------------------------------------------------------------------

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
                    if self.ledger.needs_inline_flush:
                        await self.flusher.flush_or_fail()
                    continue
                if await self.on_text(message.get("text")):
                    reason = "closed"
                    break
            if self._end_task is not None:
                # Another task ended the stream (idle, takeover, session
                # ended, engine failure); it closed the socket, which woke us.
                await self._end_task
                return
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
        self.ledger.accept(data)
        self._last_activity = self._loop.time()
        n = len(data)
        self.counters.frames_in += 1
        self.counters.bytes_in += n
        STATS.frames_in += 1
        STATS.bytes_in += n
        self.feed.send(data)

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
            await self.feed.finalize()
            await asyncio.sleep(0)  # let the pump take the finals
            await self.flusher.flush_or_fail()
        return kind == "CloseStream"

    # --- engine events -----------------------------------------------------------------------

    async def _on_event(self, event: TranscriptEvent) -> None:
        self.meter.transcript(event)
        if event.is_final:
            # Sent once stored, at the next flush.
            self.finals.add(event)
            return
        payload = segment_payload(event)
        await self.ws.send_json(payload)
        self.counters.partials_out += 1
        STATS.partials_out += 1
        if self._viewers_present and self.state is StreamState.STREAMING:
            # Nobody watches: no cross-process traffic for partials.
            self._viewer_partials.offer(payload)

    async def _on_engine_restart(self, exc: EngineError) -> None:
        self.counters.engine_restarts += 1
        STATS.engine_restarts += 1
        await self.send_control({"type": "Warning", "code": "engine_restarted", "message": exc.code})

    def _on_ack(self) -> None:
        self.meter.acked(received=self.ledger.received, last_frame_at=self._last_activity)

    # --- viewers and control messages ----------------------------------------------------------

    def _publish(self, event: dict) -> None:
        """To the session's viewers."""
        self.relay.publish_nowait(self.session.clinic_id, self.session.pk, event)

    def _publish_transcript(self, payload: dict) -> None:
        self._publish({"type": "transcript", "event": payload})

    async def _control_listener(self) -> None:
        """The session's control log, its producer's events: ``session.ended``
        (the REST API), ``stream.takeover`` (a newer producer),
        ``viewer.joined``. It outlives
        Redis errors: after a gap (events lost: Redis came back empty, or
        this listener fell behind) it listens again and asks the database
        whether the session ended meanwhile."""
        failures = 0
        while True:
            try:
                if self._control is None:
                    self._control = await self.relay.subscribe(self.session.clinic_id, control_log(self.session.pk))
                    if not await db_async(self._session_open)():
                        self._stop(StreamError(Close.NORMAL, "session_ended", "The session was ended."))
                        return
                    failures = 0
                async for item in self._control:
                    if self._on_control(item.event):
                        return
                return
            except RelayGap as gap:
                log.warning("control_gap", session_id=str(self.session.pk), reason=gap.reason)
                self._control = None
            except (RelayUnavailable, DatabaseError):
                failures += 1
                log.warning("control_listen_retry", session_id=str(self.session.pk), failures=failures)
                await asyncio.sleep(min(5.0, 0.2 * 2**failures))

    def _session_open(self) -> bool:
        return access_session(self.principal, self.session.pk).status in OPEN_STATUSES

    def _on_control(self, event: dict) -> bool:
        """Act on one control event; True when the stream ends."""
        kind = event.get("type")
        if kind == SESSION_ENDED:
            self._stop(StreamError(Close.NORMAL, "session_ended", "The session was ended."))
            return True
        if kind == "viewer.joined":
            self._viewers_present = True
        elif kind == "stream.takeover" and event.get("owner") not in (self.owner, self._replaced_owner):
            # (The owner this stream's claim replaced may announce its own,
            # older takeover late, after this stream's relay position: stale.)
            self._stop(StreamError(Close.CONFLICT, "taken_over", "Another connection took this session over."))
            return True
        return False

    # --- the ticker ----------------------------------------------------------------------------

    async def _renew(self) -> None:
        try:
            owned, viewers = await self.live.renew_status(
                clinic_id=self.session.clinic_id,
                session_id=self.session.pk,
                owner=self.owner,
                durable_bytes=self.ledger.durable,
            )
            self._viewers_present = viewers > 0
        except Exception:
            owned = True  # Redis hiccup: keep streaming; storage stays authoritative
            log.warning("lease_renew_failed", session_id=str(self.session.pk))
        if not owned:
            raise StreamError(Close.CONFLICT, "taken_over", "Another connection took this session over.")

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
                if await self._check_duration():
                    return
                if self.flusher.has_work and now - self.flusher.last_flush >= self._flush_seconds - 0.01:
                    await self.flusher.flush_or_fail()
                else:
                    # Between flushes: keep the lease, and Ack at least once
                    # a second while audio flows (liveness for the client).
                    await self._renew()
                    if self.ledger.unacked:
                        await self.flusher.ack()
        except StreamError as exc:
            self._stop(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("stream_ticker_failed", session_id=str(self.session.pk))
            self._stop(StreamError(Close.INTERNAL, "internal_error", "Internal error."))

    async def _check_duration(self) -> bool:
        """The clinic's session-length limit: a Warning some minutes ahead,
        then the session is ended cleanly (sealed, Metadata, 1000) so
        nothing received is lost. Checked once a second, not per frame."""
        ledger = self.ledger
        if not self._duration_warned and ledger.near_limit:
            self._duration_warned = True
            await self.send_control(
                {
                    "type": "Warning",
                    "code": "session_duration_near_limit",
                    "message": "This session will end soon: the clinic's maximum session length is near.",
                    "seconds_left": ledger.seconds_left,
                }
            )
        if not ledger.over_limit:
            return False
        await self.send_control(
            {
                "type": "Warning",
                "code": "session_duration_exceeded",
                "message": "The clinic's maximum session length is reached; the session is ended.",
            }
        )
        self._stop(StreamError(Close.NORMAL, "session_ended", "The session reached its maximum length."))
        return True

    # --- endings ---------------------------------------------------------------------------------

    def _stop(self, error: StreamError) -> None:
        """Ask the receive loop to end with ``error`` (from another task).
        The loop is blocked in ``receive()``, so close the socket: the server
        answers with websocket.disconnect and the loop wakes up."""
        if self.finished:
            return
        self._ending = error
        self.state = StreamState.ENDING
        self._end_task = self._loop.create_task(self._end_with_error(error))

    async def _end_with_error(self, error: StreamError) -> None:
        if self.state is StreamState.CLOSED:
            return
        if error.code == "session_ended" and error.close_code == Close.NORMAL:
            await self.finish(reason="session_ended")
            return
        taken_over = error.code == "taken_over"
        if not taken_over:
            await self.feed.drain(seconds=3.0, pump=self._pump_task)
        await self._abort(error.code, flush=not taken_over, error=error)
        if error.ends_session:
            await self._fail_session(error)

    async def _fail_session(self, error: StreamError) -> None:
        """The engine refused for good: the session ends as failed, so
        nothing is left live, and the audio stored so far is sealed into its
        WAV (playable, counted in usage) with the finals it got."""
        try:
            await db_async(session_fail)(principal=self.principal, session_id=self.session.pk, reason=error.code)
        except Exception:
            log.exception("session_fail_failed", session_id=str(self.session.pk))
            return
        self._publish({"type": SESSION_ENDED})
        try:
            if self.ledger.durable > 0:
                await db_async(session_seal)(principal=self.principal, session_id=self.session.pk)
        except Exception:
            # Failed stands; the audio stays in parts (erasure removes them).
            log.exception("failed_session_seal_failed", session_id=str(self.session.pk))

    async def finish(self, *, reason: str) -> None:
        """CloseStream or the session ended: flush everything, seal the
        session (WAV, sha256, transcript JSON), Metadata, close 1000."""
        if self.state is StreamState.CLOSED:
            return
        self.state = StreamState.CLOSED
        self.feed.closing = True
        error: StreamError | None = None
        sealed = None
        try:
            await self.feed.drain(seconds=ENGINE_DRAIN_SECONDS, pump=self._pump_task)
            await self.flusher.flush_or_fail()
            sealed = await db_async(session_seal)(principal=self.principal, session_id=self.session.pk)
        except StreamError as exc:
            error = exc
        except Exception:
            log.exception("stream_finish_failed", session_id=str(self.session.pk))
            error = StreamError(Close.INTERNAL, "internal_error", "Internal error.", retryable=True)
        await self._cleanup(reason, close_code=error.close_code if error else Close.NORMAL)
        if error is not None or sealed is None:
            await self.ws.fail(error or StreamError(Close.INTERNAL, "internal_error", "Internal error."))
        else:
            await self.ws.send_json({"type": "Metadata", "audio_ms": sealed.audio_ms, "segments": sealed.segments})
            await self.ws.close(Close.NORMAL)
            self._publish({"type": SESSION_ENDED})
        self._done.set()

    async def go_away(self) -> None:
        """Server shutdown: persist what arrived, then 1012 so the client
        resumes on another process."""
        self._stop(
            StreamError(Close.GOING_AWAY, "server_going_away", "The server is restarting; resume.", retryable=True)
        )
        await self._done.wait()

    async def _abort(self, reason: str, *, flush: bool, error: StreamError | None = None) -> None:
        if self.state is StreamState.CLOSED:
            return
        self.state = StreamState.CLOSED
        self.feed.closing = True
        if flush:
            with contextlib.suppress(Exception):
                await self.flusher.flush_or_fail()
        await self._cleanup(
            reason,
            release=error is None or error.code != "taken_over",
            close_code=error.close_code if error else Close.NORMAL,
        )
        if error is not None:
            await self.ws.fail(error)
        else:
            await self.ws.close(Close.NORMAL)
        self._done.set()

    async def _cleanup(self, reason: str, *, close_code: int, release: bool = True) -> None:
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self._viewer_partials.cancel()
        await self.feed.aclose()
        clinic_id, session_id = self.session.clinic_id, self.session.pk
        if self._control is not None:
            await self._control.aclose()
        if release:
            with contextlib.suppress(Exception):
                await self.live.release(
                    clinic_id=clinic_id, session_id=session_id, owner=self.owner, durable_bytes=self.ledger.durable
                )
        with contextlib.suppress(Exception):
            await db_async(stream_stop)(
                principal=self.principal,
                session_id=session_id,
                reason=reason,
                bytes_received=self.ledger.received - self.ledger.resume_from,
                durable=self.ledger.durable,
            )
        STATS.streams_active -= 1
        self.meter.stopped(received=self.ledger.received)
        STATS.closes[close_code] += 1
        ACTIVE_STREAMS.discard(self)
        log.info(
            "stream_stopped",
            session_id=str(session_id),
            reason=reason,
            audio_bytes_durable=self.ledger.durable,
            frames=self.counters.frames_in,
        )
