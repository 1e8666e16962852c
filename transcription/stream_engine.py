"""The engine side of a producer stream: opening the engine where the words
still pending begin, replaying the audio from there, and restarting it after
a retryable failure. A mixin of ``ProducerStream``; split out to keep
modules small.

One rule for both the resume (a new connection) and a restart (the engine
failed mid-stream): the engine opens where the last final the stream has
seen ends — stored, or still waiting for the next flush — and is fed the
audio from there to what has been received (stored parts, then the
in-memory buffer). The words that were pending are then recognised whole,
and a final already seen is never produced again: for a deterministic
engine the finals equal those of an uninterrupted stream.
"""

from __future__ import annotations

import contextlib

from asgiref.sync import sync_to_async

from sessions import audio_store
from sessions.audio import ms_to_bytes, pcm_ms
from transcription import stream_metrics, stream_seams
from transcription.engines.base import EngineError, EngineStream, StreamConfig
from transcription.stream_seams import STATS
from transcription.wire import Close, StreamError
from voiceai.logging import get_logger

log = get_logger(__name__)

MAX_ENGINE_RESTARTS = 3
MAX_REPLAY_MS = 30_000  # audio re-fed to the engine on resume or restart, at most

_run_in_thread = sync_to_async(thread_sensitive=False)


def engine_message(exc: EngineError) -> str:
    # EngineError messages are written by our adapters for clients (no
    # vendor internals, no audio or text); fall back when one is empty.
    return str(exc) or "The speech engine is unavailable."


class StreamEngine:
    """Uses ProducerStream's state: session, auth, sample_rate, durable,
    received, _buffer, _flush_lock, _last_final_end_ms, _engine,
    _engine_ready (clear while the engine is being reopened), counters."""

    async def _open_engine_replaying(self, index: audio_store.PartsIndex | None = None) -> None:
        """Open the engine after the last final seen and feed it the audio
        from there up to ``received`` (at most MAX_REPLAY_MS).

        ``index``: the stored parts, when the caller has just scanned them
        (the connect). While this runs, ``_engine`` is None, so frames that
        arrive go to the buffer only; the flush lock keeps them there (and
        ``durable`` still) until they are fed in order after the replay."""
        self._engine = None
        self._engine_ready.clear()
        try:
            await self._open_and_replay(index)
        finally:
            self._engine_ready.set()

    async def _open_and_replay(self, index: audio_store.PartsIndex | None) -> None:
        replay_from = max(
            ms_to_bytes(self._last_final_end_ms, self.sample_rate),
            self.received - ms_to_bytes(MAX_REPLAY_MS, self.sample_rate),
        )
        replay_from = min(max(replay_from, 0), self.received)
        engine = await self._open_engine(replay_from)
        try:
            async with self._flush_lock:
                stored = b""
                if replay_from < self.durable:
                    durable = self.durable

                    def read() -> bytes:
                        parts = index if index is not None else audio_store.parts_scan(self.session)
                        return b"".join(audio_store.pcm_iter(parts, start=replay_from))[: durable - replay_from]

                    stored = await _run_in_thread(read)()
                # No await from here on: stored + buffer are [replay_from, received).
                pending = bytes(self._buffer[max(0, replay_from - self.durable) :])
                step = self._max_frame
                for chunk in (stored, pending):
                    for i in range(0, len(chunk), step):
                        engine.send_audio(chunk[i : i + step])
                self._engine = engine
        except BaseException:
            # Cancelled (the stream ended meanwhile) or storage failed: the
            # engine is nobody's yet, so close it here.
            with contextlib.suppress(Exception):
                await engine.aclose()
            raise

    async def _open_engine(self, offset_bytes: int) -> EngineStream:
        config = StreamConfig(
            session_id=str(self.session.pk),
            clinic_id=str(self.session.clinic_id),
            language=self.auth.language,
            sample_rate=self.sample_rate,
            vocabulary_name=self.auth.vocabulary_name,
            start_offset_ms=pcm_ms(offset_bytes, self.sample_rate),
            extra={"start_offset_bytes": str(offset_bytes)},
        )
        try:
            return await stream_seams.engine_opener(self, config)
        except EngineError as exc:
            raise StreamError(Close.INTERNAL, exc.code, engine_message(exc), retryable=exc.retryable) from None

    async def _pump(self, engine: EngineStream) -> None:
        while True:
            try:
                async for event in engine.events():
                    await self._on_event(event)
                return
            except EngineError as exc:
                stream_metrics.pump_failed(self, exc)
                if not exc.retryable or self.counters.engine_restarts >= MAX_ENGINE_RESTARTS or self._finished:
                    log.warning("engine_failed", session_id=str(self.session.pk), code=exc.code)
                    # Retryable only if a reconnect could help: a non-retryable
                    # engine error (bad language, bad request) would repeat.
                    self._stop(StreamError(Close.INTERNAL, exc.code, engine_message(exc), retryable=exc.retryable))
                    return
                self.counters.engine_restarts += 1
                STATS.engine_restarts += 1
                await self.send_control({"type": "Warning", "code": "engine_restarted", "message": exc.code})
                with contextlib.suppress(Exception):
                    await engine.aclose()
                try:
                    # The utterance in progress when the engine failed is
                    # replayed from the last final seen, not lost.
                    await self._open_engine_replaying()
                except StreamError as err:
                    self._stop(err)
                    return
                except Exception:
                    log.exception("engine_restart_failed", session_id=str(self.session.pk))
                    self._stop(StreamError(Close.INTERNAL, "internal_error", "Internal error.", retryable=True))
                    return
                engine = self._engine
