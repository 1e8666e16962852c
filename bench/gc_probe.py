"""Garbage-collector pauses of a server process, for the gc.freeze A/B.

``install(unfreeze=...)`` records every collection's generation and
duration through ``gc.callbacks`` and writes a summary to the file named by
BENCH_GC_STATS once a second (uvicorn ends on a re-raised SIGTERM, so
``atexit`` never runs). A full (generation 2) collection walks every
tracked, unfrozen object; after ``django.setup()`` that is tens of
thousands, and the whole event loop — every stream of the process — waits.
``voiceai/asgi.py`` freezes the start-up heap; ``unfreeze=True`` undoes it
to measure what the freeze buys.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time

_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
_started: list[float] = []


def _callback(phase: str, info: dict) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
    elif _started:
        _pauses[info["generation"]].append(time.perf_counter() - _started.pop())


def summary() -> dict:
    out: dict = {}
    for gen, pauses in _pauses.items():
        ordered = sorted(pauses)
        out[f"gen{gen}"] = {
            "count": len(ordered),
            "total_ms": round(1000 * sum(ordered), 1),
            "max_ms": round(1000 * ordered[-1], 2) if ordered else 0.0,
        }
    out["frozen_objects"] = gc.get_freeze_count()
    out["tracked_objects"] = len(gc.get_objects())
    return out


def _writer(path: str) -> None:
    while True:
        time.sleep(1.0)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(summary(), f)
        os.replace(tmp, path)


def install(*, unfreeze: bool) -> None:
    if unfreeze:
        gc.unfreeze()
    gc.callbacks.append(_callback)
    path = os.environ.get("BENCH_GC_STATS")
    if path:
        threading.Thread(target=_writer, args=(path,), name="gc-probe", daemon=True).start()
