"""How late the event loop runs: the one number that says whether every
stream of a process was held up at once.

A frame's reply is late either because its own work was slow or because
the loop was busy with something else: a collection, a trim, a long
callback, another thread holding the GIL, or the process not getting its
core. The collector and the trim time themselves
(``voiceai_gc_pause_seconds``, ``voiceai_malloc_trim_seconds``); this
watches the loop itself, whatever held it: a timer set every
``INTERVAL_SECONDS`` fires late by as much as the loop was kept from it.
Each lateness goes into ``voiceai_event_loop_lag_seconds``, and one of
``LONG_LAG_SECONDS`` or more is logged (``event_loop_lag``) with its time,
so a second of missed latency can be lined up with what the process was
doing then (``make bench`` puts them in the connect storm's seconds).

20 wake-ups a second cost nothing measurable beside 5,000 frames a second.
"""

from __future__ import annotations

import asyncio

from voiceai.logging import get_logger
from voiceai.ops.metrics import LOOP_LAG

INTERVAL_SECONDS = 0.05
# Half the 93 ms budget of a frame: a stall this long shows in the p99 of a
# busy second.
LONG_LAG_SECONDS = 0.05

log = get_logger(__name__)


async def watch_loop_lag(interval: float = INTERVAL_SECONDS, long_lag: float = LONG_LAG_SECONDS) -> None:
    """Runs until cancelled (the launcher starts it with the server)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - due)
        LOOP_LAG.observe(lag)
        if lag >= long_lag:
            log.warning("event_loop_lag", lag_ms=round(1000 * lag, 1))
