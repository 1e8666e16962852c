"""The C allocator's policy for a server process that runs for days.

Python objects live in Python's own arenas, but everything larger than 512
bytes — audio frames and parts, query results, JSON bodies — comes from
glibc's ``malloc``, and the realtime pipeline does that work in a pool of
worker threads (database calls, storage writes). glibc gives each thread
that finds the arenas busy an arena of its own (up to 8 per core) and keeps
freed memory inside each arena for reuse: with a dozen threads each holding
its own high-water mark, the process's RSS crept up for as long as it ran
while the Python heap stayed flat (``make soak``, docs/benchmarks.md).

So the launcher (``voiceai.ops.serve``), once at start, before any worker
thread exists:

- caps the arenas at ``MALLOC_ARENAS`` (2), which bounds how many high-water
  marks there are (Python code holds the GIL, so threads hardly ever
  allocate at the same moment and gain little from their own arenas);
- starts a thread that hands free pages back to the kernel every
  ``TRIM_SECONDS`` (``malloc_trim(0)``: a few milliseconds, under each
  arena's lock in turn, never on the event loop).

Other C libraries (musl, macOS) have neither knob: both are then no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

from voiceai.logging import get_logger
from voiceai.ops.metrics import MALLOC_TRIM

M_ARENA_MAX = -8  # glibc's mallopt parameter number
MALLOC_ARENAS = 2
TRIM_SECONDS = 60.0

# As voiceai/ops/collector.py's threshold for the garbage collector.
LONG_TRIM_SECONDS = 0.05

log = get_logger(__name__)
_trimmer: threading.Thread | None = None


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def release_free_memory() -> bool:
    """Give the free pages of every malloc arena back to the kernel now;
    False where the C library can't. Timed into
    ``voiceai_malloc_trim_seconds``: the arena locks it holds make any thread
    that allocates meanwhile, the event loop's included, wait."""
    libc = _glibc()
    if libc is None:
        return False
    started = time.perf_counter()
    libc.malloc_trim(0)
    took = time.perf_counter() - started
    MALLOC_TRIM.observe(took)
    if took >= LONG_TRIM_SECONDS:
        log.warning("malloc_trim_slow", trim_ms=round(1000 * took, 1))
    return True


def limit_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (takes effect for threads started later)."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(M_ARENA_MAX, arenas))


def start_trimmer(interval: float = TRIM_SECONDS, *, stop: threading.Event | None = None) -> bool:
    """A daemon thread that calls ``release_free_memory`` every ``interval``
    seconds for the life of the process (once per process; ``stop`` ends
    it, for tests)."""
    global _trimmer
    if _glibc() is None:
        return False
    if _trimmer is None or not _trimmer.is_alive():
        stopped = stop or threading.Event()

        def trim() -> None:
            while not stopped.wait(interval):
                release_free_memory()

        _trimmer = threading.Thread(target=trim, name="malloc-trim", daemon=True)
        _trimmer.start()
    return True


def configure_for_long_running_server() -> None:
    """What the launcher calls once, before serving."""
    limit_arenas()
    start_trimmer()
