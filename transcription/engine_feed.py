"""The engine side of a producer stream: opening the engine where the words
still pending begin, replaying the audio from there, pumping its events, and
restarting it after a retryable failure.

One rule for the resume (a new connection) and a restart (the engine failed
mid-stream): the engine opens where the last final the stream has seen ends
— stored, or still waiting for the next flush — and is fed the audio from
there to what has been received (stored parts, then the buffer). The words
that were pending are then recognised whole, and a final already seen is
never produced again: for a deterministic engine the finals equal those of
an uninterrupted stream.

How an engine is opened is passed in (``EngineOpener``): the default picks
the clinic's engine and, for engines behind the shared upstream quota (AWS),
the quota's queue and the resilient wrapper (``producer_engine``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from asgiref.sync import sync_to_async
from django.conf import settings

from sessions import audio_store
from sessions.audio import ms_to_bytes, pcm_ms
from transcription.audio_ledger import AudioLedger
from transcription.engines import get_engine
from transcription.engines.base import EngineError, EngineStream, StreamConfig, TranscriptEvent
from transcription.wire import Close, StreamError
from voiceai.logging import get_logger

if TYPE_CHECKING:
    from clinics.access import Principal
    from sessions.models import ConsultationSession

log = get_logger(__name__)

MAX_ENGINE_RESTARTS = 3
MAX_REPLAY_MS = 30_000  # audio re-fed to the engine on resume or restart, at most

_run_in_thread = sync_to_async(thread_sensitive=False)


class EngineHost(Protocol):
    """What an opener may use of the stream it opens an engine for."""

    principal: Principal
    session: ConsultationSession
    engine_name: str

    async def send_control(self, payload: dict) -> None: ...


EngineOpener = Callable[[EngineHost, StreamConfig], Awaitable[EngineStream]]


async def default_engine_opener(host: EngineHost, config: StreamConfig) -> EngineStream:
    from transcription import stream_metrics

    engine = get_engine(host.engine_name or None)
    if engine.uses_engine_quota:
        # Upstream engines with a shared stream quota (AWS): queue for a
        # slot, retry/replay, keep-alive and roll over.
        from transcription.producer_engine import open_for_producer

        return open_for_producer(host, engine, config)
    try:
        opened = await engine.open_stream(config)
    except EngineError as exc:
        stream_metrics.engine_failed(engine.name, retryable=exc.retryable)
        raise
    stream_metrics.engine_started(engine.name)
    return opened


def engine_message(exc: EngineError) -> str:
    # EngineError messages are written by our adapters for clients (no
    # vendor internals, no audio or text); fall back when one is empty.
    return str(exc) or "The speech engine is unavailable."


class EngineFeed:
    """The engine stream of one producer and its replay/restart policy.

    ``engine`` is None while an engine is being (re)opened: frames then go
    to the ledger's buffer only and are fed, in order, after the replay.
    The flush lock keeps ``durable`` still while the replay reads storage.
    """

    def __init__(
        self,
        *,
        host: EngineHost,
        opener: EngineOpener,
        ledger: AudioLedger,
        flush_lock: asyncio.Lock,
        language: str,
        vocabulary_name: str,
        last_final_end_ms: Callable[[], int],
        on_event: Callable[[TranscriptEvent], Awaitable[None]],
        on_failure: Callable[[StreamError], None],
        on_restart: Callable[[EngineError], Awaitable[None]],
    ) -> None:
        self.host = host
        self.opener = opener
        self.ledger = ledger
        self.flush_lock = flush_lock
        self.language = language
        self.vocabulary_name = vocabulary_name
        self.last_final_end_ms = last_final_end_ms
        self.on_event = on_event
        self.on_failure = on_failure
        self.on_restart = on_restart
        self.sample_rate = host.session.sample_rate
        self.engine: EngineStream | None = None
        self.ready = asyncio.Event()  # cleared while an engine (re)opens and replays
        self.ready.set()
        self.restarts = 0
        self.closing = False

    def send(self, frame: bytes) -> None:
        """The hot path: hand a frame to the engine (buffered by it)."""
        engine = self.engine
        if engine is not None:
            engine.send_audio(frame)

    async def open_replaying(self, index: audio_store.PartsIndex | None = None) -> None:
        """Open the engine after the last final seen and feed it the audio
        from there up to ``received`` (at most MAX_REPLAY_MS). ``index``: the
        stored parts, when the caller has just scanned them (the connect)."""
        self.engine = None
        self.ready.clear()
        try:
            await self._open_and_replay(index)
        finally:
            self.ready.set()

    async def _open_and_replay(self, index: audio_store.PartsIndex | None) -> None:
        ledger = self.ledger
        replay_from = max(
            ms_to_bytes(self.last_final_end_ms(), self.sample_rate),
            ledger.received - ms_to_bytes(MAX_REPLAY_MS, self.sample_rate),
        )
        replay_from = min(max(replay_from, 0), ledger.received)
        engine = await self._open(replay_from)
        try:
            async with self.flush_lock:
                stored = b""
                if replay_from < ledger.durable:
                    stored = await _run_in_thread(self._read_stored)(index, replay_from, ledger.durable)
                # No await from here on: stored + buffer are [replay_from, received).
                pending = ledger.buffered_from(replay_from)
                step = ledger.max_frame
                for chunk in (stored, pending):
                    for i in range(0, len(chunk), step):
                        engine.send_audio(chunk[i : i + step])
                self.engine = engine
        except BaseException:
            # Cancelled (the stream ended meanwhile) or storage failed: the
            # engine is nobody's yet, so close it here.
            with contextlib.suppress(Exception):
                await engine.aclose()
            raise

    def _read_stored(self, index: audio_store.PartsIndex | None, start: int, end: int) -> bytes:
        parts = index if index is not None else audio_store.parts_scan(self.host.session)
        return b"".join(audio_store.pcm_iter(parts, start=start))[: end - start]

    async def _open(self, offset_bytes: int) -> EngineStream:
        session = self.host.session
        config = StreamConfig(
            session_id=str(session.pk),
            clinic_id=str(session.clinic_id),
            language=self.language,
            sample_rate=self.sample_rate,
            vocabulary_name=self.vocabulary_name,
            show_speaker_labels=settings.TRANSCRIPTION_SPEAKER_LABELS,
            start_offset_ms=pcm_ms(offset_bytes, self.sample_rate),
            extra={"start_offset_bytes": str(offset_bytes)},
        )
        try:
            return await self.opener(self.host, config)
        except EngineError as exc:
            raise StreamError(
                Close.INTERNAL, exc.code, engine_message(exc), retryable=exc.retryable, ends_session=not exc.retryable
            ) from None

    async def pump(self) -> None:
        """Read engine events until the engine ends; restart it after a
        retryable failure (at most MAX_ENGINE_RESTARTS times); anything
        else ends the stream through ``on_failure``."""
        engine = self.engine
        while engine is not None:
            try:
                async for event in engine.events():
                    await self.on_event(event)
                return
            except EngineError as exc:
                from transcription import stream_metrics

                stream_metrics.pump_failed(self.host, engine, exc)
                if not exc.retryable or self.restarts >= MAX_ENGINE_RESTARTS or self.closing:
                    log.warning("engine_failed", session_id=str(self.host.session.pk), code=exc.code)
                    # Retryable only if a reconnect could help: a non-retryable
                    # engine error (bad language, bad request) would repeat.
                    self.on_failure(
                        StreamError(
                            Close.INTERNAL,
                            exc.code,
                            engine_message(exc),
                            retryable=exc.retryable,
                            ends_session=not exc.retryable,
                        )
                    )
                    return
                self.restarts += 1
                await self.on_restart(exc)
                with contextlib.suppress(Exception):
                    await engine.aclose()
                try:
                    # The utterance in progress when the engine failed is
                    # replayed from the last final seen, not lost.
                    await self.open_replaying()
                except StreamError as err:
                    self.on_failure(err)
                    return
                except Exception:
                    log.exception("engine_restart_failed", session_id=str(self.host.session.pk))
                    self.on_failure(StreamError(Close.INTERNAL, "internal_error", "Internal error.", retryable=True))
                    return
                engine = self.engine

    async def finalize(self) -> None:
        if self.engine is not None:
            await self.engine.finalize()

    async def drain(self, *, seconds: float, pump: asyncio.Task | None) -> None:
        """End the engine and wait (bounded) for its last finals. An engine
        restart in progress first gets its replay in, so the finals of the
        replayed audio are drained too, not dropped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), seconds)
        engine = self.engine
        if engine is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(engine.end(), seconds)
        if pump is not None and pump is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(pump), seconds)

    async def aclose(self) -> None:
        self.closing = True
        if self.engine is not None:
            with contextlib.suppress(Exception):
                await self.engine.aclose()
