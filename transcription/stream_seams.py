"""Seams of the realtime pipeline that other parts of the platform hook
into, kept apart from the stream's logic.

- ``engine_opener``: how a producer's engine stream is opened. Wrap it
  (``set_engine_opener``) to queue for upstream capacity, retry, or count.
- ``STATS`` (process-wide) and ``StreamCounters`` (per stream,
  ``ProducerStream.counters``): counters for metrics and benchmarks.
- ``ACTIVE_STREAMS``: this process's live producer streams; call
  ``go_away()`` on each to drain a server on SIGTERM.
"""

from __future__ import annotations

import os
import secrets
import socket
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sessions.audio import ms_to_bytes
from sessions.events import session_group
from transcription.engines import get_engine
from transcription.engines.base import EngineError, EngineStream, StreamConfig

if TYPE_CHECKING:
    from transcription.stream import ProducerStream


def live_group(clinic_id: object, session_id: object) -> str:
    """Viewers' group: transcript events only (the producer isn't in it, so
    it never receives its own broadcasts)."""
    return f"{session_group(clinic_id, session_id)}.live"


def process_owner_prefix() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class ProcessStats:
    """Process-wide counters (monotonic except the two gauges)."""

    streams_active: int = 0
    viewers_active: int = 0
    streams_started: int = 0
    frames_in: int = 0
    bytes_in: int = 0
    bytes_durable: int = 0
    flushes: int = 0
    flush_failures: int = 0
    flush_seconds_total: float = 0.0
    partials_out: int = 0
    finals_out: int = 0
    acks_out: int = 0
    engine_restarts: int = 0
    closes: Counter = field(default_factory=Counter)  # close code -> count


STATS = ProcessStats()
ACTIVE_STREAMS: weakref.WeakSet[ProducerStream] = weakref.WeakSet()


@dataclass
class StreamCounters:
    frames_in: int = 0
    bytes_in: int = 0
    flushes: int = 0
    partials_out: int = 0
    finals_out: int = 0
    acks_out: int = 0
    engine_restarts: int = 0


EngineOpener = Callable[["ProducerStream", StreamConfig], Awaitable[EngineStream]]


async def default_engine_opener(stream: ProducerStream, config: StreamConfig) -> EngineStream:
    engine = get_engine(stream.auth.engine_name or None)
    if getattr(engine, "uses_engine_quota", False):
        # Upstream engines with a shared stream quota (AWS): queue for a
        # slot, retry/replay, keep-alive and roll over (producer_engine, engine_quota, resilient).
        from transcription.producer_engine import open_for_producer

        return open_for_producer(stream, engine, config)
    from transcription import stream_metrics

    try:
        opened = await engine.open_stream(config)
    except EngineError as exc:
        stream_metrics.engine_failed(engine.name, retryable=exc.retryable)
        raise
    stream_metrics.engine_started(engine.name)
    return opened


engine_opener: EngineOpener = default_engine_opener


def set_engine_opener(opener: EngineOpener) -> EngineOpener:
    """Install ``opener``; returns the previous one (to wrap or restore)."""
    global engine_opener
    previous, engine_opener = engine_opener, opener
    return previous


def new_owner_id() -> str:
    return f"{process_owner_prefix()}:{secrets.token_hex(4)}"


def frame_bytes(ms: int, sample_rate: int) -> int:
    """Size of a frame of ``ms`` (for clients and tests)."""
    return ms_to_bytes(ms, sample_rate)
