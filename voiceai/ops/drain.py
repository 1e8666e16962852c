"""Graceful drain of one app process (SIGTERM; started by ``voiceai.ops.serve``).

Order, all within DRAIN_SECONDS:

1. ``/readyz`` answers 503 ``{"status": "draining"}`` so the load balancer
   stops routing new connections here;
2. new WebSockets (producers and viewers) are refused at once with an
   ``Error`` ``server_draining`` (retryable) and close code 1012, before the
   stream token is consumed, so the client simply connects again (through
   the load balancer, to another process);
3. every live producer stream flushes what it holds to storage, sends its
   stored finals and a last ``Ack`` covering every byte it received, and
   closes with 1012 (``ProducerStream.go_away``): the client resumes on
   another process from that Ack, losing nothing;
4. the server then stops (uvicorn closes what is left — viewers — with 1012).

Streams that have not finished by the deadline are left to uvicorn's
shutdown, which cancels them (a cancelled stream still flushes what it can).
"""

from __future__ import annotations

import asyncio
import time

from voiceai.logging import get_logger

log = get_logger(__name__)

_draining = False


def is_draining() -> bool:
    return _draining


def begin() -> None:
    """Fail readiness and refuse new streams from now on."""
    global _draining
    _draining = True


def reset() -> None:
    """For tests that drain in-process."""
    global _draining
    _draining = False


async def drain(deadline_seconds: float) -> int:
    """Begin draining and go away from every live producer stream, waiting
    at most ``deadline_seconds``. Returns how many streams did not finish."""
    from transcription.stream_registry import ACTIVE_STREAMS

    begin()
    started = time.monotonic()
    streams = list(ACTIVE_STREAMS)
    log.info("drain_started", streams=len(streams), deadline_seconds=deadline_seconds)
    pending: set[asyncio.Task] = set()
    if streams:
        tasks = [asyncio.ensure_future(stream.go_away()) for stream in streams]
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline_seconds))
        for task in pending:
            task.cancel()
    log.info(
        "drain_finished",
        streams=len(streams),
        unfinished=len(pending),
        seconds=round(time.monotonic() - started, 3),
    )
    return len(pending)
