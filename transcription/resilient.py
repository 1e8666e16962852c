"""A stream that outlives its upstream streams, for any engine.

``ResilientStream`` is an ``EngineStream`` that opens upstream streams
through an opener (``engine.open_stream``, or the engine quota's opener,
which may queue) and keeps the session's audio flowing across them:

- Replay buffer: it keeps the audio not yet covered by a final result.
  When an upstream stream fails with a retryable error it opens a new one
  (backoff with full jitter) starting at the end of the last final and
  replays that audio, so nothing is lost and nothing already final is
  transcribed twice. The client gets a ``Warning`` notice per retry.
- Rollover: before ``max_stream_seconds`` (AWS: 4 h) it ends the upstream
  stream gracefully (its pending partials become finals) and continues on
  a new one from the last final.
- Keep-alive: while no audio arrives (clinician pauses) it sends short
  silence upstream before ``max_silence_seconds`` (AWS: 15 s) runs out. The
  silence exists only upstream, so event times are mapped back to the
  session's clock.
- Finalize: engines without a native flush (``native_finalize = False``,
  AWS) finalize by the same graceful end + new stream.
- Non-retryable errors (and retries exhausted) are raised from ``events()``
  as a non-retryable EngineError; the pipeline reports it and fails the
  session, while the audio it stored stays.

Time positions are bytes of PCM16 mono audio counted from the wrapper's
start (``_pos``), converted to session ms with ``start_offset_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from transcription.engines.base import (
    END_OF_EVENTS,
    Engine,
    EngineError,
    EngineStream,
    StreamConfig,
    TranscriptEvent,
    events_from_queue,
)
from voiceai.logging import get_logger

logger = get_logger(__name__)

Opener = Callable[[StreamConfig], Awaitable[EngineStream]]
Notice = Callable[[dict], None]
OnFailed = Callable[[EngineError], Awaitable[None]]

_END = END_OF_EVENTS


@dataclass(frozen=True, slots=True)
class ResiliencePolicy:
    # Roll over to a new upstream stream after this long (None: never).
    max_stream_seconds: float | None = None
    # Send keep-alive silence after this long without audio (None: never).
    keepalive_after_seconds: float | None = None
    keepalive_chunk_ms: int = 200
    max_retries: int = 6
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 8.0
    # Audio sent upstream longer ago than this with no result over it is
    # dropped from the replay buffer (a 4 h silent session must not keep
    # 460 MB); a partial still open holds the buffer back.
    replay_window_seconds: float = 60.0

    @classmethod
    def for_engine(cls, engine: Engine, **overrides: float | int | None) -> ResiliencePolicy:
        """Limits from the engine: keep-alive at a third of its silence
        limit, so two keep-alives may be lost before upstream gives up."""
        silence = engine.max_silence_seconds
        values: dict = {
            "max_stream_seconds": engine.max_stream_seconds,
            "keepalive_after_seconds": silence / 3 if silence else None,
        }
        values.update(overrides)
        return cls(**values)

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


class ResilientStream(EngineStream):
    def __init__(
        self,
        config: StreamConfig,
        *,
        opener: Opener,
        policy: ResiliencePolicy,
        on_notice: Notice | None = None,
        on_failed: OnFailed | None = None,
    ) -> None:
        self._config = config
        self._open = opener
        self._policy = policy
        self._notice_sink = on_notice or (lambda message: None)
        self._on_failed = on_failed
        # Notices wait until the consumer reads events (i.e. after it told
        # the client the stream began), so Queued never precedes Begin.
        self._held_notices: list[dict] | None = []
        self._bytes_per_second = config.sample_rate * 2
        self._pending = bytearray()
        self._pending_start = 0  # position of _pending[0]
        self._received = 0  # position after the last received byte
        self._committed = 0  # audio before this is covered by finals
        self._committed_ms = config.start_offset_ms
        self._inner: EngineStream | None = None
        self._inner_start = 0  # position where the current upstream's audio starts
        self._inner_sent = 0  # position up to which the current upstream has audio
        self._inner_ms = 0.0  # upstream clock: ms of audio + silence sent to it
        self._silences: list[tuple[float, float]] = []  # (upstream ms, duration ms)
        self._open_partials: dict[str, int] = {}  # segment id → start position
        self._accepting = False
        self._rolling = False
        self._ending = False
        self._closed = False
        self._last_audio = time.monotonic()
        self._out: asyncio.Queue = asyncio.Queue()
        self.upstream_streams = 0  # how many upstream streams were opened (for tests/metrics)
        self._supervisor = asyncio.ensure_future(self._supervise())
        self._ticker = asyncio.ensure_future(self._tick())

    # --- EngineStream -------------------------------------------------------------
    def send_audio(self, chunk: bytes) -> None:
        if self._ending or self._closed or not chunk:
            return
        self._pending.extend(chunk)
        self._received += len(chunk)
        self._last_audio = time.monotonic()
        if self._accepting and self._inner is not None:
            self._forward(chunk)

    async def finalize(self) -> None:
        inner = self._inner
        if inner is None or not self._accepting:
            return  # queued or reconnecting: the next stream starts fresh anyway
        if inner.native_finalize:
            await inner.finalize()
        else:
            await self._end_gracefully(inner)

    async def end(self) -> None:
        if self._ending:
            return
        self._ending = True
        inner = self._inner
        if inner is not None and self._accepting:
            self._accepting = False
            await inner.end()
        # Otherwise the supervisor ends the stream right after its replay.

    def notify(self, message: dict) -> None:
        """Send a notice (Warning, Queued) to the client, or hold it until
        ``events()`` is first read."""
        if self._held_notices is not None:
            self._held_notices.append(message)
        else:
            self._notice_sink(message)

    _notice = notify

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        held, self._held_notices = self._held_notices or [], None
        for message in held:
            self._notice_sink(message)
        async for event in events_from_queue(self._out):
            yield event

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._accepting = False
        for task in (self._supervisor, self._ticker):
            task.cancel()
        await asyncio.gather(self._supervisor, self._ticker, return_exceptions=True)
        if self._inner is not None:
            with contextlib.suppress(Exception):
                await self._inner.aclose()
            self._inner = None
        self._out.put_nowait(_END)

    # --- positions ----------------------------------------------------------------
    def _ms_of(self, pos: int) -> int:
        return self._config.start_offset_ms + pos * 1000 // self._bytes_per_second

    def _pos_of(self, session_ms: int) -> int:
        samples = (session_ms - self._config.start_offset_ms) * (self._bytes_per_second // 2) // 1000
        return max(0, samples * 2)

    def _session_ms(self, upstream_ms: int) -> int:
        """Upstream clock → session clock: subtract the keep-alive silence
        sent before that point (a time inside a silence maps to its start)."""
        shift = 0.0
        for at, duration in self._silences:
            if upstream_ms <= at:
                break
            shift += min(duration, upstream_ms - at)
        return round(upstream_ms - shift)

    def _forward(self, chunk: bytes) -> None:
        assert self._inner is not None
        self._inner.send_audio(chunk)
        self._inner_sent += len(chunk)
        self._inner_ms += len(chunk) * 1000 / self._bytes_per_second

    # --- the supervisor -----------------------------------------------------------
    async def _supervise(self) -> None:
        attempt = 0
        try:
            while True:
                try:
                    inner = await self._open_inner()
                except EngineError as exc:
                    attempt = await self._retry_or_fail(exc, attempt)
                    continue
                try:
                    await self._pump(inner)
                except EngineError as exc:
                    await self._drop_inner(inner)
                    attempt = await self._retry_or_fail(exc, attempt)
                    continue
                await self._drop_inner(inner)
                # Go on after a rollover/finalize, and also when ending if
                # audio came in that this upstream stream never got.
                if (self._rolling and not self._ending) or self._received > self._inner_sent:
                    attempt = 0
                    continue
                self._out.put_nowait(_END)
                return
        except _Failed:
            return

    async def _open_inner(self) -> EngineStream:
        start = self._committed
        config = dataclasses.replace(self._config, start_offset_ms=self._ms_of(start))
        inner = await self._open(config)
        self.upstream_streams += 1
        self._rolling = False
        self._inner = inner
        self._inner_start = start
        self._inner_sent = start
        self._inner_ms = float(config.start_offset_ms)
        self._silences = []
        self._open_partials = {}
        replay = memoryview(self._pending)[start - self._pending_start :]
        # Replayed in 100 ms chunks, the size live audio comes in.
        step = max(2, self._bytes_per_second // 10 // 2 * 2)
        for offset in range(0, len(replay), step):
            self._forward(bytes(replay[offset : offset + step]))
        replay.release()
        self._accepting = True
        if self._ending:
            self._accepting = False
            await inner.end()
        return inner

    async def _pump(self, inner: EngineStream) -> None:
        rollover = None
        if self._policy.max_stream_seconds is not None:
            rollover = asyncio.get_running_loop().call_later(
                self._policy.max_stream_seconds, lambda: asyncio.ensure_future(self._end_gracefully(inner))
            )
        try:
            async for event in inner.events():
                self._on_event(event)
        finally:
            if rollover is not None:
                rollover.cancel()

    def _on_event(self, event: TranscriptEvent) -> None:
        start_ms = self._session_ms(event.start_ms)
        end_ms = self._session_ms(event.end_ms)
        if event.is_final:
            self._open_partials.pop(event.segment_id, None)
            if end_ms <= self._committed_ms and event.end_ms > event.start_ms:
                return  # already final from an earlier upstream stream
            self._commit(self._pos_of(end_ms), end_ms)
        else:
            self._open_partials.setdefault(event.segment_id, self._pos_of(start_ms))
        self._out.put_nowait(dataclasses.replace(event, start_ms=start_ms, end_ms=end_ms))

    def _commit(self, pos: int, ms: int | None = None) -> None:
        pos = min(pos, self._received)
        if pos <= self._committed:
            return
        self._committed = pos
        self._committed_ms = ms if ms is not None else self._ms_of(pos)
        drop = self._committed - self._pending_start
        if drop > 0:
            del self._pending[:drop]
            self._pending_start = self._committed

    async def _end_gracefully(self, inner: EngineStream) -> None:
        """Rollover/finalize: stop feeding this upstream stream and end it;
        its last finals arrive, the supervisor opens the next stream and
        replays whatever came in meanwhile."""
        if inner is not self._inner or not self._accepting:
            return
        self._accepting = False
        self._rolling = True
        # A failure here shows in the pump too, which retries.
        with contextlib.suppress(EngineError):
            await inner.end()

    async def _drop_inner(self, inner: EngineStream) -> None:
        self._accepting = False
        if self._inner is inner:
            self._inner = None
        with contextlib.suppress(Exception):
            await inner.aclose()

    async def _retry_or_fail(self, exc: EngineError, attempt: int) -> int:
        attempt += 1
        if not exc.retryable or attempt > self._policy.max_retries:
            logger.warning("engine_stream_failed", session_id=self._config.session_id, code=exc.code, attempts=attempt)
            final = EngineError(str(exc), code=exc.code, retryable=False)
            if self._on_failed is not None:
                try:
                    await self._on_failed(final)
                except Exception:
                    logger.exception("engine_failure_hook_failed", session_id=self._config.session_id)
            self._out.put_nowait(final)
            raise _Failed
        delay = self._policy.backoff(attempt)
        logger.info("engine_stream_retry", session_id=self._config.session_id, code=exc.code, attempt=attempt)
        self._notice(
            {
                "type": "Warning",
                "code": "engine_reconnecting",
                "message": "The transcription engine had a problem; reconnecting. No audio is lost.",
                "reason": exc.code,
                "attempt": attempt,
                "retry_in_ms": round(delay * 1000),
            }
        )
        await asyncio.sleep(delay)
        return attempt

    # --- keep-alive and replay-buffer bound ------------------------------------------
    async def _tick(self) -> None:
        keepalive = self._policy.keepalive_after_seconds
        interval = min(1.0, keepalive / 2) if keepalive else 1.0
        silence = b"\x00" * (self._bytes_per_second * self._policy.keepalive_chunk_ms // 1000 // 2 * 2)
        while True:
            await asyncio.sleep(interval)
            inner = self._inner
            if inner is None or not self._accepting:
                continue
            if keepalive and time.monotonic() - self._last_audio >= keepalive:
                self._silences.append((self._inner_ms, self._policy.keepalive_chunk_ms))
                inner.send_audio(silence)
                self._inner_ms += self._policy.keepalive_chunk_ms
                self._last_audio = time.monotonic()
            self._bound_replay_buffer()

    def _bound_replay_buffer(self) -> None:
        window = int(self._policy.replay_window_seconds * self._bytes_per_second)
        limit = self._inner_sent - window
        if self._open_partials:
            limit = min(limit, *self._open_partials.values())
        if limit > self._committed:
            self._commit(limit - limit % 2)


class _Failed(Exception):
    """Internal: the supervisor gave up (the error is already queued)."""


def open_resilient(
    engine: Engine,
    config: StreamConfig,
    *,
    opener: Opener | None = None,
    on_notice: Notice | None = None,
    on_failed: OnFailed | None = None,
    **policy_overrides: float | int | None,
) -> ResilientStream:
    """The pipeline's entry point: a resilient stream over ``engine`` whose
    upstream streams come from ``opener`` (default: straight from the engine;
    pass the engine quota's opener to queue and fail over across regions)."""
    policy = ResiliencePolicy.for_engine(engine, **policy_overrides)
    return ResilientStream(
        config, opener=opener or engine.open_stream, policy=policy, on_notice=on_notice, on_failed=on_failed
    )
