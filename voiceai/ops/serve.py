"""The production launcher: ``python -m voiceai.ops.serve [--host H] [--port P]``.

uvicorn with the settings the measurements chose (``websockets-sansio``
implementation, no access log) and one difference from ``uvicorn`` on the
command line: the first SIGTERM (or Ctrl-C) *drains* the process before
uvicorn stops it (``voiceai.ops.drain``: readiness fails, new streams are
refused with 1012, live producers are flushed, acknowledged and closed with
1012 so they resume on another process), bounded by DRAIN_SECONDS. A second
SIGINT stops at once.

uvicorn installs its own handlers for SIGTERM/SIGINT while it serves, so a
handler set by the app would be replaced; wrapping ``Server.handle_exit``
is the hook that survives. Logging is left to Django's LOGGING (JSON lines):
``log_config=None`` keeps uvicorn from installing its plain-text handlers.
The C allocator is set up for a process that runs for days first
(``voiceai.ops.malloc``: two malloc arenas, free pages trimmed every minute),
every garbage collection is timed (``voiceai.ops.collector``), and so is the
event loop's lateness (``voiceai.ops.loop_lag``).

HEAP_SNAPSHOT_DIR (unset in production; ``make soak`` sets it) makes SIGUSR1
write a tracemalloc snapshot of the process into that directory, the first
signal also starting the tracing (HEAP_SNAPSHOT_FRAMES frames per allocation,
default 1). Unset, nothing is traced and SIGUSR1 keeps its default action:
tracing costs CPU on every allocation.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
from types import FrameType

import uvicorn

# How long uvicorn waits, after the drain, for what is left (viewers, HTTP
# requests) before cancelling it.
AFTER_DRAIN_GRACE_SECONDS = 5


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self._drain_task: asyncio.Task | None = None
        self._lag_task: asyncio.Task | None = None

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets=sockets)
        from voiceai.ops.loop_lag import watch_loop_lag

        # Held here: the loop keeps only a weak reference to its tasks.
        self._lag_task = asyncio.get_running_loop().create_task(watch_loop_lag())

    async def shutdown(self, sockets: list | None = None) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
        await super().shutdown(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or self.should_exit:
            # A second signal: SIGINT forces the exit, SIGTERM is ignored
            # while the drain runs (it has its own deadline).
            if sig == signal.SIGINT or self._drain_task is None:
                super().handle_exit(sig, frame)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not serving yet: nothing to drain
            super().handle_exit(sig, frame)
            return
        self._drain_task = loop.create_task(self._drain_then_exit(sig))

    async def _drain_then_exit(self, sig: int) -> None:
        from voiceai.ops import drain

        try:
            await drain.drain(self.drain_seconds)
        finally:
            super().handle_exit(sig, None)


def build(host: str, port: int, *, drain_seconds: float | None = None) -> DrainingServer:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceai.settings")
    from django.conf import settings

    config = uvicorn.Config(
        "voiceai.asgi:application",
        host=host,
        port=port,
        # Measured in docs/benchmarks.md: 3-25 % less CPU per frame than the
        # legacy "websockets" implementation, which uvicorn deprecates.
        ws="websockets-sansio",
        # PCM audio barely compresses; deflating every frame (which browsers
        # and the websockets client offer by default) only burns CPU.
        ws_per_message_deflate=False,
        lifespan="off",  # Django's ASGI app has no lifespan protocol
        access_log=False,
        log_config=None,
        # The peer address is passed on as connected: voiceai.client_ip alone
        # reads X-Forwarded-For (its last hop, behind BEHIND_TLS_PROXY). With
        # proxy_headers and FORWARDED_ALLOW_IPS="*" uvicorn would take the
        # first, client-chosen entry instead.
        proxy_headers=False,
        timeout_graceful_shutdown=AFTER_DRAIN_GRACE_SECONDS,
    )
    return DrainingServer(config, drain_seconds=settings.DRAIN_SECONDS if drain_seconds is None else drain_seconds)


def install_heap_snapshots(directory: str, frames: int = 1) -> None:
    """SIGUSR1 -> ``<directory>/heap-<pid>-<n>.pickle`` (a tracemalloc
    snapshot; the first signal starts tracing, so snapshots hold what was
    allocated since then and is still alive: the growth). The file appears
    under a temporary name first, so a reader never sees half of it."""
    import gc
    import tracemalloc

    taken = [0]

    def snapshot(_sig: int, _frame: FrameType | None) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)
        # What is still reachable, not garbage waiting for the next full
        # collection: growth that a collection would free is no leak. What
        # it frees is counted by type first: garbage that only a collection
        # frees (reference cycles) is what makes the collections, and the
        # memory they leave fragmented, grow with the sessions served.
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            census = _garbage_census(gc.garbage)
            gc.garbage.clear()
        finally:
            gc.set_debug(0)
        gc.collect()
        taken[0] += 1
        path = os.path.join(directory, f"heap-{os.getpid()}-{taken[0]}.pickle")
        with open(path.replace(".pickle", "-garbage.txt"), "w") as out:
            out.write("\n".join(f"{n}\t{name}" for name, n in census.most_common(60)) + "\n")
        tracemalloc.take_snapshot().dump(path + ".tmp")
        os.replace(path + ".tmp", path)

    os.makedirs(directory, exist_ok=True)
    signal.signal(signal.SIGUSR1, snapshot)
    signal.signal(signal.SIGUSR2, lambda _sig, _frame: write_allocator_stats(directory))


def _garbage_census(garbage: list) -> collections.Counter[str]:
    """Objects in reference cycles by type (module-qualified for classes,
    qualified names for functions, coroutines and frames)."""
    census: collections.Counter[str] = collections.Counter()
    for obj in garbage:
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        code = getattr(obj, "cr_code", None) or getattr(obj, "f_code", None) or getattr(obj, "__code__", None)
        if code is not None:
            name += f" {code.co_qualname if hasattr(code, 'co_qualname') else code.co_name}"
        census[name] += 1
    return census


def write_allocator_stats(directory: str) -> None:
    """``<directory>/malloc-<pid>-<n>.txt``: pymalloc's arenas and pools
    (``sys._debugmallocstats``) and glibc's arenas (``malloc_info``), the two
    allocators whose pages tracemalloc doesn't see: a process whose traced
    heap is flat while its RSS grows is holding them."""
    import ctypes
    import ctypes.util
    import glob
    import sys

    n = len(glob.glob(os.path.join(directory, f"malloc-{os.getpid()}-*.txt"))) + 1
    path = os.path.join(directory, f"malloc-{os.getpid()}-{n}.txt")
    with open(path + ".tmp", "w") as out:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(out.fileno(), 2)  # _debugmallocstats writes to C's stderr
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_info"):
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        fp = libc.fopen((path + ".tmp").encode(), b"a")
        if fp:
            libc.malloc_info(0, fp)
            libc.fclose(fp)
    os.replace(path + ".tmp", path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m voiceai.ops.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104 - a container's listener
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args(argv)
    from voiceai.ops import malloc

    # Before any worker thread exists: arenas are given to threads as they start.
    malloc.configure_for_long_running_server()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceai.settings")
    import logging

    import django

    # Settings (and LOGGING) before uvicorn logs its first line; warnings
    # become log records too, so every line on stdout/stderr is JSON.
    django.setup(set_prefix=False)
    logging.captureWarnings(True)
    # Every garbage collection timed into voiceai_gc_pause_seconds, the long
    # ones logged: a collection stops every stream of the process.
    from voiceai.ops import collector

    collector.install_timing()
    if os.environ.get("HEAP_SNAPSHOT_DIR"):
        install_heap_snapshots(os.environ["HEAP_SNAPSHOT_DIR"], int(os.environ.get("HEAP_SNAPSHOT_FRAMES", "1")))
    build(args.host, args.port).run()


if __name__ == "__main__":
    main()
