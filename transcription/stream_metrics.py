"""Prometheus metrics of the realtime pipeline (names in voiceai/ops/metrics.py).

Nothing here runs per audio frame. Gauges that describe the process's
streams right now (durable-ack lag, engine streams open) are computed when
/metrics is scraped; counters move at Ack/flush time or per transcript
event. Frame-to-transcript latency is *sampled*: at each Ack the stream
remembers (offset received so far, when its last frame arrived); the first
transcript event whose end reaches that offset observes the elapsed time.
That is at most one observation per Ack (≈ 1/s per stream).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from sessions.audio import bytes_per_ms
from transcription.stream_registry import ACTIVE_STREAMS
from voiceai.ops.metrics import (
    AUDIO_SECONDS,
    DURABLE_ACK_LAG,
    ENGINE_STREAM_FAILURES,
    ENGINE_STREAM_QUOTA,
    ENGINE_STREAM_STARTS,
    ENGINE_STREAMS_ACTIVE,
    FRAME_TO_TRANSCRIPT,
    LIVE_SESSIONS,
    STORAGE_ERRORS,
)

if TYPE_CHECKING:
    from transcription.engine_feed import EngineHost
    from transcription.engines.base import EngineError, TranscriptEvent
    from transcription.stream import ProducerStream


class StreamMeter:
    """One producer stream's share of the process metrics."""

    __slots__ = ("_bytes_per_ms", "_bytes_per_second", "_clinic", "_live", "_metered", "_sample", "_time")

    def __init__(self, *, clinic_id: object, sample_rate: int, time) -> None:
        self._clinic = str(clinic_id)
        self._bytes_per_ms = bytes_per_ms(sample_rate)
        self._bytes_per_second = self._bytes_per_ms * 1000
        self._time = time  # the loop's clock
        self._metered = 0  # session offset up to which audio seconds were counted
        self._sample: tuple[int, float] | None = None
        self._live = False

    def started(self, *, received: int) -> None:
        self._metered = received
        self._live = True
        LIVE_SESSIONS.labels(clinic=self._clinic).inc()

    def acked(self, *, received: int, last_frame_at: float) -> None:
        """At every Ack: count the audio that arrived since the last one and
        arm a latency sample at the current end of the audio."""
        if received > self._metered:
            AUDIO_SECONDS.inc((received - self._metered) / self._bytes_per_second)
            self._metered = received
            if self._sample is None:
                self._sample = (received, last_frame_at)

    def transcript(self, event: TranscriptEvent) -> None:
        sample = self._sample
        if sample is not None and event.end_ms * self._bytes_per_ms >= sample[0] - 1:
            self._sample = None
            FRAME_TO_TRANSCRIPT.observe(max(0.0, self._time() - sample[1]))

    def stopped(self, *, received: int) -> None:
        if received > self._metered:
            AUDIO_SECONDS.inc((received - self._metered) / self._bytes_per_second)
            self._metered = received
        if self._live:
            self._live = False
            LIVE_SESSIONS.labels(clinic=self._clinic).dec()


def storage_error(operation: str) -> None:
    STORAGE_ERRORS.labels(operation=operation).inc()


def engine_started(engine: str) -> None:
    ENGINE_STREAM_STARTS.labels(engine=engine).inc()


def engine_failed(engine: str, *, retryable: bool) -> None:
    ENGINE_STREAM_FAILURES.labels(engine=engine, retryable="true" if retryable else "false").inc()


def quota_bound(engine_stream: object) -> bool:
    """True for the engine stream of quota-bound engines (AWS): its
    upstream streams are counted where they are opened (engine_leases)."""
    from transcription.producer_engine import ProducerEngineStream
    from transcription.resilient import ResilientStream

    return isinstance(engine_stream, ResilientStream | ProducerEngineStream)


# --- gauges computed at scrape time -------------------------------------------------


def _streams() -> list[ProducerStream]:
    # /metrics runs in a worker thread while the event loop adds and removes
    # streams; a WeakSet can't be iterated during a concurrent change.
    for _ in range(5):
        try:
            return list(ACTIVE_STREAMS)
        except RuntimeError:
            continue
    return []


def durable_ack_lag_seconds() -> float:
    """The oldest unstored audio of any stream: seconds since a stream with
    buffered audio last stored some. ~AUDIO_FLUSH_SECONDS when healthy;
    grows without bound while storage fails."""
    return max((stream.unstored_seconds() for stream in _streams()), default=0.0)


def engine_streams_active() -> float:
    """Upstream engine streams open in this process. Engines behind the
    stream quota (AWS) count their leased upstream streams (a session
    waiting in the queue has none); the others count one per producer."""
    from transcription.engine_leases import LeasedStream

    direct = 0
    for stream in _streams():
        engine = stream.feed.engine
        if engine is not None and not quota_bound(engine):
            direct += 1
    return float(LeasedStream.open_streams + direct)


DURABLE_ACK_LAG.set_function(durable_ack_lag_seconds)
ENGINE_STREAMS_ACTIVE.set_function(engine_streams_active)
ENGINE_STREAM_QUOTA.set(settings.ENGINE_STREAMS_PER_REGION)


def pump_failed(host: EngineHost, engine: object, exc: EngineError) -> None:
    """A producer's engine stream failed. Quota-bound engines count their
    upstream failures themselves (engine_leases.LeasedStream)."""
    if not quota_bound(engine):
        engine_failed(host.engine_name or settings.TRANSCRIPTION_ENGINE, retryable=exc.retryable)
