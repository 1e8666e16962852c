"""The server side of a producer's grace period: every server process looks,
once a ABANDONED_SESSION_CHECK_SECONDS (60 s), for recordings whose producer
disconnected and did not resume within the clinic's
``producer_grace_minutes``, and ends and seals them
(``sessions.lifecycle.sessions_reap_abandoned``), freeing their slot.

No timer lives in the process that served the stream: the decision reads
shared state only (the last stream start/stop in PostgreSQL, the producer
lease in Redis), so it works with any number of processes and across
restarts. A Redis key taken with SET NX per interval lets one process do a
round while the others skip it; without Redis (``make run``) there is one
process and it simply runs.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from django.conf import settings
from django.db import connections

from sessions.lifecycle import ReapReport, sessions_reap_abandoned
from voiceai.logging import get_logger

log = get_logger(__name__)

LOCK_KEY = "voiceai:abandoned-reaper"

_lock = threading.Lock()
_started = False


def start_reaper() -> bool:
    """Start this process's reaper thread once; False when switched off
    (ABANDONED_SESSION_CHECK_SECONDS=0)."""
    global _started
    interval = settings.ABANDONED_SESSION_CHECK_SECONDS
    if interval <= 0:
        return False
    with _lock:
        if _started:
            return True
        _started = True
    threading.Thread(target=_loop, args=(interval,), name="abandoned-reaper", daemon=True).start()
    return True


def _loop(interval: float) -> None:
    while True:
        time.sleep(interval)
        try:
            reap_round(interval)
        except Exception as exc:  # a database or Redis hiccup: the next round retries
            log.warning("abandoned_reaper_failed", error=type(exc).__name__)
        finally:
            # This thread's connections go back (to the pool) between rounds.
            connections.close_all()


def reap_round(interval: float) -> ReapReport | None:
    """One round, if this process's turn (None otherwise)."""
    if not _take_turn(interval):
        return None
    return sessions_reap_abandoned()


def _take_turn(interval: float) -> bool:
    if not settings.REDIS_URL:
        return True
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        owner = f"{socket.gethostname()}:{os.getpid()}"
        # Held for most of an interval: one round per interval across the cluster.
        return bool(client.set(LOCK_KEY, owner, nx=True, px=max(1, int(interval * 900))))
    finally:
        client.close()
