"""How a producer stream ends: CloseStream or the session ended (seal the
session, Metadata, 1000), errors and takeovers (Error, then the code), drops
(flush what arrived, keep the session open for resume) and server shutdown
(1012). A mixin of ``ProducerStream``; split out to keep modules small.

Book-keeping (lease release, audit row, counters) happens before the final
close, so whoever sees the close also sees its effects.
"""

from __future__ import annotations

import asyncio
import contextlib

from sessions.audio import ms_to_bytes
from sessions.events import SESSION_ENDED, session_group
from sessions.services import session_seal, stream_stop
from transcription.stream_seams import ACTIVE_STREAMS, STATS
from transcription.wire import Close, StreamError
from voiceai.db import db_async
from voiceai.logging import get_logger

log = get_logger(__name__)

ENGINE_DRAIN_SECONDS = 10.0


class StreamEndings:
    """Uses ProducerStream's state: ws, session, principal, live, layer,
    owner, durable, received, counters and its tasks."""

    async def _control_listener(self) -> None:
        """Channel-layer messages for this session: ``session.ended`` (the
        REST API), ``stream.takeover`` (a newer producer), ``viewer.joined``."""
        while True:
            message = await self.layer.receive(self._channel)
            kind = message.get("type")
            if kind == SESSION_ENDED:
                self._stop(StreamError(Close.NORMAL, "session_ended", "The session was ended."))
                return
            if kind == "viewer.joined":
                self._viewers_present = True
            elif kind == "stream.takeover" and message.get("owner") != self.owner:
                self._stop(StreamError(Close.CONFLICT, "taken_over", "Another connection took this session over."))
                return

    def _stop(self, error: StreamError) -> None:
        """Ask the receive loop to end with ``error`` (from another task).
        The loop is blocked in ``receive()``, so close the socket: the server
        answers with websocket.disconnect and the loop wakes up."""
        if self._ending is not None or self._finished:
            return
        self._ending = error
        self._end_task = self._loop.create_task(self._end_with_error(error))

    async def _check_duration(self) -> bool:
        """The clinic's session-length limit: a Warning some minutes ahead,
        then the session is ended cleanly (sealed, Metadata, 1000) so
        nothing received is lost. Checked once a second, not per frame."""
        if not self._duration_warned and self.received >= self._warn_bytes:
            self._duration_warned = True
            await self.send_control(
                {
                    "type": "Warning",
                    "code": "session_duration_near_limit",
                    "message": "This session will end soon: the clinic's maximum session length is near.",
                    "seconds_left": max(0, (self._max_bytes - self.received) // ms_to_bytes(1000, self.sample_rate)),
                }
            )
        if self.received < self._max_bytes:
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

    # --- endings --------------------------------------------------------------------------

    async def _end_with_error(self, error: StreamError) -> None:
        if self._finished:
            return
        if error.code == "session_ended" and error.close_code == Close.NORMAL:
            await self.finish(reason="session_ended")
            return
        taken_over = error.code == "taken_over"
        if not taken_over:
            await self._drain_engine(seconds=3.0)
        await self._abort(error.code, flush=not taken_over, error=error)

    async def _drain_engine(self, *, seconds: float) -> None:
        # An engine restart in progress first gets its replay in, so the
        # finals of the replayed audio are drained too, not dropped.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._engine_ready.wait(), seconds)
        engine, pump = self._engine, self._pump_task
        if engine is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(engine.end(), seconds)
        if pump is not None and pump is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(pump), seconds)

    async def finish(self, *, reason: str) -> None:
        """CloseStream or the session ended: flush everything, seal the
        session (WAV, sha256, transcript JSON), Metadata, close 1000."""
        if self._finished:
            return
        self._finished = True
        error: StreamError | None = None
        sealed = None
        try:
            await self._drain_engine(seconds=ENGINE_DRAIN_SECONDS)
            await self._flush_or_fail()
            sealed = await db_async(session_seal)(principal=self.principal, session_id=self.session.pk)
        except StreamError as exc:
            error = exc
        except Exception:
            log.exception("stream_finish_failed", session_id=str(self.session.pk))
            error = StreamError(Close.INTERNAL, "internal_error", "Internal error.", retryable=True)
        # Book-keeping before the close, so whoever sees the close also sees
        # the released lease and the audit row.
        await self._cleanup(reason, close_code=error.close_code if error else Close.NORMAL)
        if error is not None or sealed is None:
            await self.ws.fail(error)
        else:
            await self.ws.send_json({"type": "Metadata", "audio_ms": sealed.audio_ms, "segments": sealed.segments})
            await self.ws.close(Close.NORMAL)
            await self._group_send(session_group(self.session.clinic_id, self.session.pk), {"type": SESSION_ENDED})
        self._done.set()

    async def go_away(self) -> None:
        """Server shutdown: persist what arrived, then 1012 so the client
        resumes on another process."""
        self._stop(
            StreamError(Close.GOING_AWAY, "server_going_away", "The server is restarting; resume.", retryable=True)
        )
        await self._done.wait()

    async def _abort(self, reason: str, *, flush: bool, error: StreamError | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        if flush:
            with contextlib.suppress(Exception):
                await self._flush_or_fail()
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
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self._viewer_timer is not None:
            self._viewer_timer.cancel()
        if self._engine is not None:
            with contextlib.suppress(Exception):
                await self._engine.aclose()
        clinic_id, session_id = self.session.clinic_id, self.session.pk
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(session_group(clinic_id, session_id), self._channel)
        if release:
            with contextlib.suppress(Exception):
                await self.live.release(
                    clinic_id=clinic_id, session_id=session_id, owner=self.owner, durable_bytes=self.durable
                )
        with contextlib.suppress(Exception):
            await db_async(stream_stop)(
                principal=self.principal,
                session_id=session_id,
                reason=reason,
                bytes_received=self.received - self.resume_from_byte,
                durable=self.durable,
            )
        STATS.streams_active -= 1
        self.meter.stopped(received=self.received)
        STATS.closes[close_code] += 1
        ACTIVE_STREAMS.discard(self)
        log.info(
            "stream_stopped",
            session_id=str(session_id),
            reason=reason,
            audio_bytes_durable=self.durable,
            frames=self.counters.frames_in,
        )
