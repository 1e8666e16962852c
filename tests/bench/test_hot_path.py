"""The audio hot path costs no thread hop and no database query per frame.

Counted, not timed: counting wrappers around every way this code base
leaves the event loop (asgiref's ``SyncToAsync`` — which
``database_sync_to_async`` is — and ``loop.run_in_executor``) and around
every SQL statement Django executes, on any thread. The measured facts (docs/architecture.md)
explain why this matters: one thread hop per frame (Channels'
``aclose_old_connections``) is what caps an unmodified consumer at a few
hundred streams per core.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from asgiref.sync import SyncToAsync
from django.db.backends.utils import CursorWrapper

from tests.servers import REPO_ROOT
from tests.transcription.helpers import FRAME, atoken_for, communicator, make_session, pcm, receive_until

pytestmark = pytest.mark.django_db(transaction=True)

# 2.5 s of audio, sent as fast as the socket takes it: under the 3 s of
# unacknowledged audio at which the stream flushes inline (a designed hop).
FRAMES = 25


@pytest.fixture(autouse=True)
def _no_flush_during_the_frames(settings, tmp_path):
    from django.db import connection

    # Pool threads close their connections, so the test database can be dropped.
    connection.settings_dict["CONN_MAX_AGE"] = 0
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    # Flushes (storage + finals insert: the hops the design allows, at
    # session edges and once per flush) must not fall inside the window.
    settings.AUDIO_FLUSH_SECONDS = 60.0
    settings.STREAM_IDLE_TIMEOUT_SECONDS = 60.0
    settings.FAKE_ENGINE_MODE = "script"
    settings.FAKE_ENGINE_DELAY_MS = 0
    from transcription.engines import get_engine

    get_engine.cache_clear()
    yield
    get_engine.cache_clear()


@pytest.fixture
def counts(monkeypatch) -> Counter:
    """Counts thread hops and SQL statements wherever they happen."""
    counter: Counter = Counter()
    original_call = SyncToAsync.__call__
    original_executor = asyncio.BaseEventLoop.run_in_executor
    original_execute = CursorWrapper._execute_with_wrappers

    async def counting_call(self, *args, **kwargs):
        counter["sync_to_async"] += 1
        return await original_call(self, *args, **kwargs)

    def counting_executor(self, executor, func, *args):
        counter["run_in_executor"] += 1
        return original_executor(self, executor, func, *args)

    def counting_execute(self, sql, params, many, executor):
        counter["sql"] += 1
        return original_execute(self, sql, params, many, executor)

    monkeypatch.setattr(SyncToAsync, "__call__", counting_call)
    monkeypatch.setattr(asyncio.BaseEventLoop, "run_in_executor", counting_executor)
    monkeypatch.setattr(CursorWrapper, "_execute_with_wrappers", counting_execute)
    return counter


async def test_it_handles_audio_frames_without_thread_hops_or_queries(principal_clinician_a, counts):
    session = await asyncio.to_thread(make_session, principal_clinician_a)
    comm = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
    connected, _ = await comm.connect()
    assert connected
    await receive_until(comm, "Begin")
    # The wrappers do count: authorising and starting the stream hopped to
    # a thread and queried the database.
    assert counts["sync_to_async"] + counts["run_in_executor"] > 0
    assert counts["sql"] > 0
    before = counts.copy()

    audio = pcm(FRAME * FRAMES, seed=6)
    for i in range(0, len(audio), FRAME):
        await comm.send_to(bytes_data=audio[i : i + FRAME])
    # The script engine emits a partial every 500 ms of audio: the one at
    # the end of the audio proves every frame went through the pipeline.
    last_ms = FRAMES * 100
    while True:
        message = json.loads(await comm.receive_from(timeout=10))
        if message["type"] == "Transcript" and not message["is_final"] and message["end_ms"] >= last_ms:
            break

    hops = (counts["sync_to_async"] - before["sync_to_async"]) + (counts["run_in_executor"] - before["run_in_executor"])
    assert hops == 0, f"{hops} thread hops for {FRAMES} frames"
    assert counts["sql"] - before["sql"] == 0, f"{counts['sql'] - before['sql']} queries for {FRAMES} frames"
    await comm.disconnect()


def test_it_freezes_the_startup_heap_and_keeps_young_collections_rare():
    """What voiceai/asgi.py sets for the collector, measured in
    docs/benchmarks.md: the start-up heap frozen (full collections don't
    rescan it) and a young-generation threshold far above the default 700
    (which collects many times a second at a few hundred streams). Checked
    in a fresh interpreter, as a server process starts."""
    from django.conf import settings

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "voiceai.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    code = "import gc, json, voiceai.asgi; print(json.dumps([gc.get_freeze_count(), gc.get_threshold()]))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    frozen, threshold = json.loads(out.stdout.strip().splitlines()[-1])
    assert frozen > 10_000
    assert threshold[0] >= 10_000
