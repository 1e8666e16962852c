"""The one interface every speech engine implements.

Audio goes in as raw PCM16LE chunks; ``TranscriptEvent``s come out. Engines
raise only ``EngineError`` (vendor SDK errors are translated in the
adapter), and say whether a retry could help. ``send_audio`` is synchronous
and must not block or hop threads: it is called once per audio frame on the
event loop, so engines buffer and do their work in their own task.
"""

import abc
import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class TranscriptEvent:
    segment_id: str
    revision: int
    is_final: bool
    start_ms: int
    end_ms: int
    text: str
    speaker: str = ""
    confidence: float | None = None


class EngineError(Exception):
    """The only error an engine raises. ``retryable`` says whether opening a
    new stream and replaying audio could succeed (throttling, 5xx, dropped
    connection) or not (bad request, unsupported language, auth)."""

    def __init__(self, message: str, *, code: str = "engine_error", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class StreamConfig:
    session_id: str
    clinic_id: str
    language: str
    sample_rate: int = 16000
    vocabulary_name: str = ""
    show_speaker_labels: bool = False
    # Where the audio this stream receives starts within the session, so
    # event times (and segment ids) stay session-relative across reconnects
    # and upstream stream rollovers.
    start_offset_ms: int = 0
    extra: dict[str, str] = field(default_factory=dict)


# Put on an engine's output queue after the last event.
END_OF_EVENTS = object()


async def events_from_queue(queue: asyncio.Queue) -> AsyncIterator[TranscriptEvent]:
    """The usual body of ``EngineStream.events``: yield what the engine's
    task puts on ``queue`` until END_OF_EVENTS; an EngineError put there
    is raised to the reader, so failures arrive in order with the events."""
    while True:
        item = await queue.get()
        if item is END_OF_EVENTS:
            return
        if isinstance(item, EngineError):
            raise item
        yield item


class EngineStream(abc.ABC):
    """One recognition stream. Life cycle: ``send_audio`` any number of
    times, optionally ``finalize`` (turn pending partials into finals and go
    on), then ``end`` (flush; ``events`` ends after the last final), or
    ``aclose`` to abandon it."""

    # Whether ``finalize`` flushes upstream (False: the resilient wrapper
    # finalizes by ending the upstream stream and opening a new one).
    native_finalize: bool = True

    @abc.abstractmethod
    def send_audio(self, chunk: bytes) -> None: ...

    @abc.abstractmethod
    async def finalize(self) -> None: ...

    @abc.abstractmethod
    async def end(self) -> None: ...

    @abc.abstractmethod
    def events(self) -> AsyncIterator[TranscriptEvent]: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...


class Engine(abc.ABC):
    name: str = "base"
    # Upper bound of one upstream stream's life; the pipeline rolls over to
    # a new stream before it (AWS Transcribe: 4 h). None: unlimited.
    max_stream_seconds: float | None = None
    # Upstream ends a stream after this long without audio (AWS: 15 s), so
    # the pipeline sends silence while the clinician pauses. None: no limit.
    max_silence_seconds: float | None = None
    # Streams share the region's upstream quota (AWS Transcribe): producers
    # queue for a slot through ``engine_quota`` and run behind the resilient
    # wrapper. False: ``open_stream`` is called directly.
    uses_engine_quota: bool = False
    # The spoken languages (BCP-47, as ``Language``) the engine transcribes;
    # None: any. Declared on the class so the console and session creation
    # can say what a clinic's engine can do before anything is recorded.
    languages: frozenset[str] | None = None

    @abc.abstractmethod
    async def open_stream(self, config: StreamConfig) -> EngineStream:
        """Open a stream; raises EngineError (retryable for throttling)."""
