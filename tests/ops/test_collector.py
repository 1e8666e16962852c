"""The garbage collector's policy (voiceai/ops/collector.py): the cycles
that ended connections leave are freed by a full collection after enough
of them, never more than once a minute; every collection is timed into
``voiceai_gc_pause_seconds{generation}`` and a long one is logged."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref

import pytest
from prometheus_client import REGISTRY

from voiceai.ops import collector


@pytest.fixture
def timed():
    collector.install_timing()
    yield
    collector.uninstall_timing()


def _collections(generation: int) -> float:
    return REGISTRY.get_sample_value("voiceai_gc_pause_seconds_count", {"generation": str(generation)}) or 0.0


class _Cycle:
    """What an ended connection leaves: objects that refer to each other."""

    def __init__(self) -> None:
        self.me = self


async def _app_leaving_a_cycle(scope, receive, send) -> None:
    scope["left"].append(weakref.ref(_Cycle()))


def _serve(app: collector.FullCollectionAfterScopes, scopes: int) -> list[weakref.ref]:
    left: list[weakref.ref] = []

    async def run() -> None:
        for _ in range(scopes):
            await app({"type": "http", "left": left}, None, None)

    asyncio.run(run())
    return left


def _alive(refs: list[weakref.ref]) -> int:
    return sum(1 for r in refs if r() is not None)


@pytest.fixture
def no_automatic_collections():
    # Only the policy's own collection may free the cycles in these tests.
    gc.disable()
    yield
    gc.enable()


def test_it_frees_the_cycles_of_ended_scopes_once_enough_have_ended(no_automatic_collections):
    app = collector.FullCollectionAfterScopes(_app_leaving_a_cycle, scopes=10, min_seconds=0.0)
    left = _serve(app, 9)
    assert _alive(left) == 9  # not yet: nine scopes
    left += _serve(app, 1)
    assert _alive(left) == 0


def test_it_runs_a_full_collection_at_most_once_per_interval(no_automatic_collections):
    app = collector.FullCollectionAfterScopes(_app_leaving_a_cycle, scopes=5, min_seconds=3600.0)
    app.last_full -= 3600.0  # the interval since the last one has passed
    left = _serve(app, 5)
    assert _alive(left) == 0
    left = _serve(app, 20)  # enough scopes, but within the interval
    assert _alive(left) == 20
    gc.collect()


def test_it_counts_a_scope_that_failed():
    async def failing(scope, receive, send) -> None:
        raise RuntimeError("the app failed")

    app = collector.FullCollectionAfterScopes(failing, scopes=100, min_seconds=0.0)
    with pytest.raises(RuntimeError):
        asyncio.run(app({"type": "http"}, None, None))
    assert app.ended == 1


def test_it_times_every_collection_by_generation(timed):
    before = _collections(2)
    gc.collect(2)
    assert _collections(2) == before + 1


def test_it_installs_its_timing_once(timed):
    collector.install_timing()
    collector.install_timing()
    assert gc.callbacks.count(collector._on_collection) == 1


def test_it_logs_a_collection_longer_than_the_threshold(timed, monkeypatch: pytest.MonkeyPatch, caplog):
    monkeypatch.setattr(collector, "LONG_PAUSE_SECONDS", 0.0)
    with caplog.at_level(logging.WARNING, logger="voiceai.ops.collector"):
        gc.collect(1)
    assert any("gc_pause" in r.getMessage() for r in caplog.records)


def test_it_keeps_short_collections_out_of_the_log(timed, monkeypatch: pytest.MonkeyPatch, caplog):
    monkeypatch.setattr(collector, "LONG_PAUSE_SECONDS", 60.0)
    with caplog.at_level(logging.WARNING, logger="voiceai.ops.collector"):
        gc.collect(0)
    assert not any("gc_pause" in r.getMessage() for r in caplog.records)


def test_the_served_application_counts_its_scopes():
    from voiceai.asgi import application

    assert isinstance(application, collector.FullCollectionAfterScopes)
    assert application.scopes == collector.SCOPES_PER_FULL_COLLECTION
