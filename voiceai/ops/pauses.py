"""Pauses that stop every stream of a process at once, made visible.

A collection by Python's garbage collector runs on the event loop's thread
with the GIL held: while it walks the tracked objects, no frame of any
stream is read, acknowledged or relayed. Its length grows with the objects
the live streams keep (a full collection at 500 streams is near the 93 ms
budget), so it is the first suspect when one second of a steady load misses
its p99 (docs/benchmarks.md, "Crowds"). ``install`` times every collection
into ``voiceai_gc_pause_seconds{generation}`` and logs the long ones
(``gc_pause``), so an operator can line a latency spike up with its cause;
``voiceai/ops/malloc.py`` does the same for its trims.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from voiceai.logging import get_logger
from voiceai.ops.metrics import GC_PAUSE

# Long enough to matter against the 93 ms per-frame budget, rare enough that
# a healthy process logs a handful a day.
LONG_PAUSE_SECONDS = 0.05

log = get_logger(__name__)
_started: list[float] = []


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
        log.warning(
            "gc_pause",
            generation=generation,
            pause_ms=round(1000 * took, 1),
            collected=info.get("collected"),
        )


def install() -> None:
    """Time every collection of this process from now on (once; the
    launcher calls it)."""
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)


def uninstall() -> None:
    if _on_collection in gc.callbacks:
        gc.callbacks.remove(_on_collection)
    _started.clear()
