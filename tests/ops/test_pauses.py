"""Garbage-collector pauses are measured (voiceai/ops/pauses.py): every
collection lands in ``voiceai_gc_pause_seconds{generation}`` and a long one
is logged, so a second that misses its latency budget can be lined up with
the collection that stopped every stream."""

from __future__ import annotations

import gc
import logging

import pytest
from prometheus_client import REGISTRY

from voiceai.ops import pauses


@pytest.fixture(autouse=True)
def installed():
    pauses.install()
    yield
    pauses.uninstall()


def _collections(generation: int) -> float:
    return REGISTRY.get_sample_value("voiceai_gc_pause_seconds_count", {"generation": str(generation)}) or 0.0


def test_it_times_every_collection_by_generation():
    before = _collections(2)
    gc.collect(2)
    assert _collections(2) == before + 1


def test_it_installs_its_callback_once():
    pauses.install()
    pauses.install()
    assert gc.callbacks.count(pauses._on_collection) == 1


def test_it_logs_a_collection_longer_than_the_threshold(monkeypatch: pytest.MonkeyPatch, caplog):
    monkeypatch.setattr(pauses, "LONG_PAUSE_SECONDS", 0.0)
    with caplog.at_level(logging.WARNING, logger="voiceai.ops.pauses"):
        gc.collect(1)
    assert any("gc_pause" in r.getMessage() for r in caplog.records)


def test_it_keeps_short_collections_out_of_the_log(monkeypatch: pytest.MonkeyPatch, caplog):
    monkeypatch.setattr(pauses, "LONG_PAUSE_SECONDS", 60.0)
    with caplog.at_level(logging.WARNING, logger="voiceai.ops.pauses"):
        gc.collect(0)
    assert not any("gc_pause" in r.getMessage() for r in caplog.records)
