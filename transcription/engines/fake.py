"""A deterministic engine for tests and benchmarks.

``script`` mode (default): the audio is cut into segments of
``SEGMENT_MS`` on the session's clock. While a segment fills, a partial is
emitted every ``PARTIAL_EVERY_MS`` of audio (revisions 0, 1, ...); when the
audio crosses the segment's end, its final follows. The words are derived
from the segment's start offset, and the segment id is ``fake-<start_ms>``,
so a stream restarted at an offset (resume) produces exactly the segments a
continuous stream would have — ids included. ``finalize`` turns the pending
part into a final at once; the rest of that segment becomes a new segment.
Events are delayed by FAKE_ENGINE_DELAY_MS (0: none).

``echo`` mode (FAKE_ENGINE_MODE=echo): every audio chunk yields at once a
partial whose text is the session-relative byte offset the audio so far
reaches (e.g. ``"32000"``), so a client can time frame → transcript. With
FAKE_ENGINE_ECHO_FINAL_MS > 0 the echo segment also ends with a final (same
text as that chunk's partial) after each chunk that takes the audio past a
multiple of that many ms of session time (one final per chunk, however many
multiples a large chunk spans), and a new segment ``echo-<end_ms>`` starts:
the crowd benchmark counts these finals at every viewer (exactly once, in
order). Boundaries lie on the session clock, so a resumed stream fed the
same chunks ends its segments where a continuous one would. 0 (default):
partials only.

``refuse`` mode (FAKE_ENGINE_MODE=refuse): like ``script`` until
REFUSE_AFTER_MS of session audio, then the stream fails for good
(``EngineError`` ``engine_refused``, not retryable), as an engine that
refuses a session mid-way does: the browser tests check that the console
and the session end cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from django.conf import settings

from transcription.engines.base import (
    END_OF_EVENTS,
    Engine,
    EngineError,
    EngineStream,
    StreamConfig,
    TranscriptEvent,
    events_from_queue,
)

SEGMENT_MS = 2000
PARTIAL_EVERY_MS = 500
REFUSE_AFTER_MS = 3000
_WORDS = [
    "patient",
    "reports",
    "mild",
    "headache",
    "since",
    "monday",
    "no",
    "fever",
    "blood",
    "pressure",
    "normal",
    "advise",
    "rest",
    "fluids",
    "and",
    "follow",
    "up",
    "next",
    "week",
    "if",
    "symptoms",
    "persist",
]

_END = END_OF_EVENTS


def script_words(start_ms: int, end_ms: int) -> str:
    """The scripted text of the audio span [start_ms, end_ms): one word per
    250 ms, picked by absolute position so any cut yields the same words."""
    first = start_ms // 250
    last = max(first + 1, -(-end_ms // 250))
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(first, last))


class FakeEngineStream(EngineStream):
    def __init__(self, config: StreamConfig, *, mode: str, delay_ms: int, echo_final_ms: int = 0) -> None:
        self._config = config
        self._mode = mode
        self._delay = delay_ms / 1000.0
        self._echo_final_ms = echo_final_ms
        self._bytes_per_ms = config.sample_rate * 2 / 1000.0
        # The pipeline passes the exact byte offset; ms would round.
        start_bytes = int(config.extra.get("start_offset_bytes") or round(config.start_offset_ms * self._bytes_per_ms))
        self._offset_bytes = start_bytes - (start_bytes % 2)
        self._seg_start_ms = config.start_offset_ms
        self._revision = 0
        self._next_partial_ms = self._seg_start_ms + PARTIAL_EVERY_MS
        self._out: asyncio.Queue = asyncio.Queue()
        self._closed = False
        self._ended = False
        self._pending_delayed: set[asyncio.Task] = set()

    # --- input ---------------------------------------------------------------

    def send_audio(self, chunk: bytes) -> None:
        if self._closed or self._ended:
            return
        self._offset_bytes += len(chunk)
        if self._mode == "echo":
            self._echo()
            return
        now = self._now_ms()
        if self._mode == "refuse" and now >= REFUSE_AFTER_MS:
            self._ended = True
            self._out.put_nowait(
                EngineError("the fake engine refuses this stream", code="engine_refused", retryable=False)
            )
            return
        # Segment boundaries lie on multiples of SEGMENT_MS of session time.
        while now >= self._boundary():
            end = self._boundary()
            self._emit_final(end)
        while now >= self._next_partial_ms:
            self._emit(self._event(self._next_partial_ms, is_final=False))
            self._revision += 1
            self._next_partial_ms += PARTIAL_EVERY_MS

    async def finalize(self) -> None:
        if self._mode == "script" and not self._closed:
            now = self._now_ms()
            if now > self._seg_start_ms:
                self._emit_final(now)

    async def end(self) -> None:
        if self._ended or self._closed:
            return
        await self.finalize()
        self._ended = True
        if self._pending_delayed:
            await asyncio.gather(*self._pending_delayed, return_exceptions=True)
        self._out.put_nowait(_END)

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._pending_delayed):
            task.cancel()
        self._out.put_nowait(_END)

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        async for event in events_from_queue(self._out):
            yield event

    # --- helpers -------------------------------------------------------------

    def _echo(self) -> None:
        now = self._now_ms()
        self._emit(self._echo_event(now, is_final=False))
        self._revision += 1
        every = self._echo_final_ms
        if every > 0 and now // every > self._seg_start_ms // every:
            self._emit(self._echo_event(now, is_final=True))
            self._seg_start_ms = now
            self._revision = 0

    def _echo_event(self, end_ms: int, *, is_final: bool) -> TranscriptEvent:
        return TranscriptEvent(
            segment_id=f"echo-{self._seg_start_ms}",
            revision=self._revision,
            is_final=is_final,
            start_ms=self._seg_start_ms,
            end_ms=end_ms,
            text=str(self._offset_bytes),
            confidence=0.9 if is_final else None,
        )

    def _now_ms(self) -> int:
        return int(self._offset_bytes / self._bytes_per_ms)

    def _boundary(self) -> int:
        return (self._seg_start_ms // SEGMENT_MS + 1) * SEGMENT_MS

    def _event(self, end_ms: int, *, is_final: bool) -> TranscriptEvent:
        return TranscriptEvent(
            segment_id=f"fake-{self._seg_start_ms}",
            revision=self._revision,
            is_final=is_final,
            start_ms=self._seg_start_ms,
            end_ms=end_ms,
            text=script_words(self._seg_start_ms, end_ms),
            speaker="spk_0" if self._config.show_speaker_labels else "",
            confidence=0.9 if is_final else None,
        )

    def _emit_final(self, end_ms: int) -> None:
        self._emit(self._event(end_ms, is_final=True))
        self._seg_start_ms = end_ms
        self._revision = 0
        self._next_partial_ms = end_ms + PARTIAL_EVERY_MS

    def _emit(self, event: TranscriptEvent) -> None:
        if self._delay <= 0:
            self._out.put_nowait(event)
            return
        task = asyncio.get_running_loop().create_task(self._emit_later(event))
        self._pending_delayed.add(task)
        task.add_done_callback(self._pending_delayed.discard)

    async def _emit_later(self, event: TranscriptEvent) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(self._delay)
            if not self._closed:
                self._out.put_nowait(event)


class FakeEngine(Engine):
    name = "fake"

    def __init__(
        self, *, mode: str | None = None, delay_ms: int | None = None, echo_final_ms: int | None = None
    ) -> None:
        self.mode = mode or settings.FAKE_ENGINE_MODE
        self.delay_ms = settings.FAKE_ENGINE_DELAY_MS if delay_ms is None else delay_ms
        self.echo_final_ms = settings.FAKE_ENGINE_ECHO_FINAL_MS if echo_final_ms is None else echo_final_ms

    async def open_stream(self, config: StreamConfig) -> FakeEngineStream:
        return FakeEngineStream(config, mode=self.mode, delay_ms=self.delay_ms, echo_final_ms=self.echo_final_ms)
