"""Where note jobs run: a worker thread in each server process.

``note_jobs_kick`` (after a job is queued) runs the due jobs now, in a
daemon thread, so a draft does not wait for the next poll.
``note_worker_start`` (from the ASGI application, beside the abandoned-
session reaper) polls every NOTES_JOB_POLL_SECONDS for due jobs and for
jobs whose process died (an expired lease): a restart resumes every job,
because their state is in PostgreSQL, not here. Any number of processes
may poll; a job is claimed by one (``notes.jobs``).
"""

from __future__ import annotations

import threading
import time

from django.conf import settings
from django.db import connections

from notes.jobs import note_jobs_run_due
from voiceai.logging import get_logger

log = get_logger(__name__)

_lock = threading.Lock()
_running = False
_again = False
_threads: set[threading.Thread] = set()
_started = False


def note_jobs_kick() -> None:
    """Run the due jobs in a worker thread (one per process at a time; a
    kick while it runs makes it look again before it stops)."""
    global _running, _again
    if not settings.NOTES_WORKER_IN_PROCESS:
        return
    with _lock:
        if _running:
            _again = True
            return
        _running = True
        _again = False
    thread = threading.Thread(target=_drain, name="note-jobs", daemon=True)
    _threads.add(thread)
    thread.start()


def _drain() -> None:
    global _running, _again
    try:
        while True:
            try:
                note_jobs_run_due()
            except Exception as exc:  # a database hiccup: the poll or the next kick retries
                log.warning("note_jobs_failed", error=type(exc).__name__)
            with _lock:
                if not _again:
                    _running = False
                    return
                _again = False
    finally:
        connections.close_all()
        _threads.discard(threading.current_thread())


def note_jobs_wait(timeout: float = 30.0) -> None:
    """Wait for this process's job threads (tests, graceful shutdown)."""
    deadline = time.monotonic() + timeout
    for thread in list(_threads):
        thread.join(max(0.0, deadline - time.monotonic()))


def note_worker_start() -> bool:
    """Start this process's polling thread once; False when switched off
    (NOTES_JOB_POLL_SECONDS=0 or NOTES_WORKER_IN_PROCESS off)."""
    global _started
    interval = settings.NOTES_JOB_POLL_SECONDS
    if interval <= 0 or not settings.NOTES_WORKER_IN_PROCESS:
        return False
    with _lock:
        if _started:
            return True
        _started = True
    threading.Thread(target=_poll, args=(interval,), name="note-jobs-poll", daemon=True).start()
    return True


def _poll(interval: float) -> None:
    # A first look right away: jobs a restart interrupted resume at start-up
    # (their leases expired), not a whole interval later.
    while True:
        note_jobs_kick()
        time.sleep(interval)
