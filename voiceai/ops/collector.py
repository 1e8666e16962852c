"""The garbage collector's policy for a process that serves streams for days.

Three facts decide it (docs/benchmarks.md, "Soak" and "Garbage collector"):

- A collection runs on the event loop's thread with the GIL held: while it
  walks the tracked objects no frame of any stream is read, acknowledged or
  relayed. A full collection walks every live stream's objects (~350 each):
  ~45 ms at 300 streams, about the 93 ms budget at 500.
- So young collections are made rare (``tune``: the start-up heap frozen,
  generation 0 collected after 10,000 net allocations instead of 700), and
  automatic full collections all but stop: they wait for 100 young ones.
  A young collection's pause grows with the threshold: at 50,000 one took
  40-60 ms, and at 80 % of a core a 50 ms stall becomes a ~250 ms backlog
  for every stream; at 10,000 the connect storm's typical second went from
  a p99 of 40-70 ms to 12-20 ms (docs/benchmarks.md, "Crowds").
- But every connection and request that ends leaves reference cycles
  behind (asyncio tasks and their ``CancelledError`` tracebacks, uvicorn's
  protocol and its transport, DRF's serializer fields): a few hundred
  objects, tens of KB with the buffers they hold, that only a *full*
  collection frees, because a stream's objects are old by the time it ends.
  Without one, a process serving a clinic day grew by that much per session
  for as long as it ran (``make soak``: +27 % RSS in an hour at 300
  streams, while the heap that was still reachable stayed flat).

Hence ``FullCollectionAfterScopes``: a full collection once
``SCOPES_PER_FULL_COLLECTION`` connections and requests have ended since the
last one, never more often than every ``MIN_SECONDS_BETWEEN_FULL``. The
garbage it frees is bounded by what that many scopes leave; a process whose
streams only keep streaming (a connect storm, a steady clinic hour) is never
paused by it.

``install_timing`` (the launcher calls it) times every collection into
``voiceai_gc_pause_seconds{generation}`` and logs the long ones
(``gc_pause``), so a second that misses its latency budget can be lined up
with its cause; ``voiceai/ops/malloc.py`` does the same for its trims.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from voiceai.logging import get_logger
from voiceai.ops.metrics import GC_PAUSE

# Young-generation threshold: each live stream keeps ~350 tracked objects;
# at 10 frames/s per stream the default (700) collected ~25 times a second
# at 250 streams, and 50,000 made each collection a 40-60 ms pause.
YOUNG_THRESHOLD = 10_000
# Ended connections and requests between two full collections. A stream's
# garbage holds its buffers too (its audio ledger, the socket's reader): with
# 500 the garbage waiting for a collection reached 25-35 MB of the C heap at
# 300 streams and the heap kept that high-water mark; with 100 it stays a few
# MB, at the price of a full collection about once a minute in a busy clinic
# day (~45 ms at 300 streams, under the 93 ms budget).
SCOPES_PER_FULL_COLLECTION = 100
MIN_SECONDS_BETWEEN_FULL = 60.0
# Long enough to matter against the 93 ms per-frame budget, rare enough that
# a healthy process logs a handful a day.
LONG_PAUSE_SECONDS = 0.05

log = get_logger(__name__)
_started: list[float] = []


def tune() -> None:
    """Once, after everything is imported: the start-up heap (~75k objects
    after ``django.setup()``) frozen, so no collection rescans it, and young
    collections made rare."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)


class FullCollectionAfterScopes:
    """ASGI wrapper: counts the scopes (connections, requests) that end and
    runs a full collection when enough have, at most once a minute."""

    def __init__(
        self,
        app: Any,
        *,
        scopes: int = SCOPES_PER_FULL_COLLECTION,
        min_seconds: float = MIN_SECONDS_BETWEEN_FULL,
    ) -> None:
        self.app = app
        self.scopes = scopes
        self.min_seconds = min_seconds
        self.ended = 0
        self.last_full = time.monotonic()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            self.scope_ended()

    def scope_ended(self) -> None:
        self.ended += 1
        now = time.monotonic()
        if self.ended >= self.scopes and now - self.last_full >= self.min_seconds:
            self.ended = 0
            self.last_full = now
            gc.collect(2)


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
        return
    if not _started:  # installed in the middle of a collection
        return
    took = time.perf_counter() - _started.pop()
    generation = info.get("generation", -1)
    GC_PAUSE.labels(generation=str(generation)).observe(took)
    if took >= LONG_PAUSE_SECONDS:
        log.warning("gc_pause", generation=generation, pause_ms=round(1000 * took, 1), collected=info.get("collected"))


def install_timing() -> None:
    """Time every collection of this process from now on (once; the
    launcher calls it)."""
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)


def uninstall_timing() -> None:
    if _on_collection in gc.callbacks:
        gc.callbacks.remove(_on_collection)
    _started.clear()
