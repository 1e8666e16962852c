"""This process's live streams and their counters.

- ``ACTIVE_STREAMS``: the live producer streams; ``voiceai.ops.drain`` calls
  ``go_away()`` on each on SIGTERM, and /metrics reads gauges from them.
- ``STATS`` (process-wide) and ``StreamCounters`` (one per stream): counters
  for metrics and benchmarks, plain integer adds (never per-frame I/O).
- ``new_owner_id``: the id a producer connection holds its lease under.
"""

from __future__ import annotations

import os
import secrets
import socket
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transcription.stream import ProducerStream


def process_owner_prefix() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def new_owner_id() -> str:
    return f"{process_owner_prefix()}:{secrets.token_hex(4)}"


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
