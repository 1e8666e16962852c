"""The engine stream of a live producer for quota-bound engines (AWS).

``open_for_producer`` (called by ``transcription.engine_feed.default_engine_opener``)
returns at once: the resilient
stream queues for a lease in the background while the producer receives,
acknowledges and stores audio; ``Queued``/``Warning`` notices go to the
client through ``producer.send_control``; when the engine gives up, the
session is marked failed (the producer then sends Error and closes).

Late completion: a clinician may close the stream while the session is
still queued, or before a slow upstream caught up. The producer waits
``ENGINE_DRAIN_SECONDS`` for the last finals and then seals the session;
instead of dropping the rest, ``aclose`` leaves the resilient stream
running (it holds the audio not yet transcribed) for up to
``LATE_COMPLETION_SECONDS``, stores the finals that arrive, audits them and
rewrites the session's ``transcript.json``. Only after a clean end
(``end()`` called); an aborted stream is closed at once — its client
resumes, and the new stream starts from the durable offset.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sessions.services import finals_store_late, session_fail
from transcription.engine_leases import QuotaOpener
from transcription.engine_quota import get_engine_quota
from transcription.engines.base import Engine, EngineError, EngineStream, StreamConfig, TranscriptEvent
from transcription.resilient import ResilientStream, open_resilient
from voiceai.db import db_async
from voiceai.logging import get_logger

logger = get_logger(__name__)

LATE_COMPLETION_SECONDS = 30 * 60.0
_LATE: set[asyncio.Task] = set()


class ProducerEngineStream(EngineStream):
    def __init__(self, inner: ResilientStream, *, principal: Any, session_id: Any) -> None:
        self.inner = inner
        self.native_finalize = True  # the resilient stream handles it
        self._principal = principal
        self._session_id = session_id
        self._ended = False
        self._events_done = False
        self._failed = False

    def send_audio(self, chunk: bytes) -> None:
        self.inner.send_audio(chunk)

    async def finalize(self) -> None:
        await self.inner.finalize()

    async def end(self) -> None:
        self._ended = True
        await self.inner.end()

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        try:
            async for event in self.inner.events():
                yield event
        except EngineError:
            self._failed = True
            raise
        self._events_done = True

    async def aclose(self) -> None:
        if self._ended and not self._events_done and not self._failed:
            task = asyncio.get_running_loop().create_task(self._complete_late())
            _LATE.add(task)
            task.add_done_callback(_LATE.discard)
            return
        await self.inner.aclose()

    async def _complete_late(self) -> None:
        finals: dict[str, TranscriptEvent] = {}
        try:
            async with asyncio.timeout(LATE_COMPLETION_SECONDS):
                async for event in self.inner.events():
                    if event.is_final:
                        finals[event.segment_id] = event
        except (EngineError, TimeoutError) as exc:
            logger.warning(
                "late_transcription_incomplete", session_id=str(self._session_id), code=getattr(exc, "code", "timeout")
            )
        finally:
            await self.inner.aclose()
        if finals:
            try:
                await db_async(finals_store_late)(
                    principal=self._principal, session_id=self._session_id, finals=list(finals.values())
                )
            except Exception:
                logger.exception("late_finals_not_stored", session_id=str(self._session_id))


def open_for_producer(producer: Any, engine: Engine, config: StreamConfig) -> EngineStream:
    principal = producer.principal
    loop = asyncio.get_running_loop()
    sending: set[asyncio.Task] = set()

    async def send(message: dict) -> None:
        with contextlib.suppress(Exception):  # the socket may be closing
            await producer.send_control(message)

    def notice(message: dict) -> None:
        task = loop.create_task(send(message))
        sending.add(task)
        task.add_done_callback(sending.discard)

    async def failed(error: EngineError) -> None:
        await db_async(session_fail)(principal=principal, session_id=producer.session.pk, reason=error.code)

    holder: list[ResilientStream] = []
    opener = QuotaOpener(
        engine,
        get_engine_quota(),
        clinic_id=str(principal.clinic.pk),
        priority=int(getattr(principal.clinic, "priority", 0) or 0),
        on_notice=lambda message: holder[0].notify(message),
    )
    stream = open_resilient(engine, config, opener=opener, on_notice=notice, on_failed=failed)
    holder.append(stream)
    return ProducerEngineStream(stream, principal=principal, session_id=producer.session.pk)
