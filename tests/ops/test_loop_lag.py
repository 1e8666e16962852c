"""The event loop's lateness (voiceai/ops/loop_lag.py): every tick goes into
``voiceai_event_loop_lag_seconds``, and a loop held up long enough is
logged with its time, whatever held it."""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import REGISTRY

from voiceai.ops.loop_lag import watch_loop_lag


def _ticks() -> float:
    return REGISTRY.get_sample_value("voiceai_event_loop_lag_seconds_count") or 0.0


def _over(bound: str) -> float:
    total = _ticks()
    under = REGISTRY.get_sample_value("voiceai_event_loop_lag_seconds_bucket", {"le": bound}) or 0.0
    return total - under


async def _watch_while(blocking_seconds: float, long_lag: float) -> None:
    watcher = asyncio.create_task(watch_loop_lag(interval=0.01, long_lag=long_lag))
    await asyncio.sleep(0.05)
    time.sleep(blocking_seconds)  # noqa: ASYNC251 - the point: a callback that holds the loop
    await asyncio.sleep(0.05)
    watcher.cancel()


def test_a_blocked_loop_is_counted_and_logged_with_its_lag(caplog):
    before_ticks, before_over = _ticks(), _over("0.093")
    with caplog.at_level(logging.WARNING, logger="voiceai.ops.loop_lag"):
        asyncio.run(_watch_while(0.15, long_lag=0.05))
    assert _ticks() > before_ticks
    # At least the blocked tick (a loaded test machine may add one of its own).
    assert _over("0.093") >= before_over + 1
    lines = [r.getMessage() for r in caplog.records if "event_loop_lag" in r.getMessage()]
    assert lines
    assert all("lag_ms" in line for line in lines)


def test_a_free_loop_logs_nothing(caplog):
    # A threshold far above any scheduling hiccup of a busy test machine.
    before_over = _over("0.5")
    with caplog.at_level(logging.WARNING, logger="voiceai.ops.loop_lag"):
        asyncio.run(_watch_while(0.0, long_lag=0.5))
    assert _over("0.5") == before_over
    assert not [r for r in caplog.records if "event_loop_lag" in r.getMessage()]
