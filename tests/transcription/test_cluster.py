"""Real server processes (uvicorn) sharing PostgreSQL, Redis and storage:
a viewer on B follows a producer on A; ``kill -9`` of A mid-stream, then a
resume on B loses nothing; the crashed process's lease heals."""

import asyncio
import json
import os
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sessions.audio import wav_bytes
from sessions.models import ConsultationSession, TranscriptSegment
from tests.servers import requires_shared_database
from tests.transcription.helpers import FRAME, make_session, pcm, token_for
from voiceai.db import db_async

pytestmark = [
    pytest.mark.slow,
    requires_shared_database(),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL)"),
]

SERVER_ENV = {
    "TRANSCRIPTION_ENGINE": "fake",
    "FAKE_ENGINE_MODE": "script",
    "AUDIO_FLUSH_SECONDS": "0.2",
    "SESSION_LEASE_SECONDS": "2",
    "STREAM_IDLE_TIMEOUT_SECONDS": "15",
    "LOG_LEVEL": "INFO",  # connection lines are logged (checked for tokens)
}

adb = db_async


@pytest.fixture
def cluster(transactional_db, server_factory):
    a, b = server_factory.many(2, env=SERVER_ENV)
    return a, b, server_factory.media_root


def _url(server, session, kind, token, query=""):
    return f"{server.ws_url}/ws/v1/sessions/{session.pk}/{kind}?token={token}{query}"


async def _read_until(ws, kind, sink, seconds=10.0):
    async with asyncio.timeout(seconds):
        while True:
            message = json.loads(await ws.recv())
            sink.append(message)
            if message["type"] == kind:
                return message


def _finals(messages):
    return [m["segment_id"] for m in messages if m["type"] == "Transcript" and m["is_final"]]


async def test_it_lets_a_viewer_on_another_process_follow_the_producer(cluster, principal_clinician_a):
    a, b, _ = cluster
    session = await adb(make_session)(principal_clinician_a)
    audio = pcm(FRAME * 50, seed=11)
    produced, viewed = [], []
    producer_token = await adb(token_for)(principal_clinician_a, session)
    viewer_token = await adb(token_for)(principal_clinician_a, session)
    async with connect(_url(a, session, "stream", producer_token)) as producer:
        await _read_until(producer, "Begin", produced)
        async with connect(_url(b, session, "live", viewer_token)) as viewer:
            await _read_until(viewer, "Begin", viewed)
            for i in range(0, len(audio), FRAME):
                await producer.send(audio[i : i + FRAME])
                await asyncio.sleep(0.02)
            await producer.send(json.dumps({"type": "CloseStream"}))
            await _read_until(producer, "Metadata", produced, seconds=20)
            await _read_until(viewer, "End", viewed, seconds=20)
    assert _finals(produced) == ["fake-0", "fake-2000", "fake-4000"]
    assert _finals(viewed) == _finals(produced)
    # The servers logged the connections, but never a token (the redaction
    # of access-log lines is covered in tests/ops/test_runtime.py).
    assert "connection open" in a.output() and "connection open" in b.output()
    assert producer_token not in a.output() and viewer_token not in b.output()


async def test_it_resumes_on_another_process_after_kill_9_without_loss_or_duplicates(cluster, principal_clinician_a):
    a, b, media = cluster
    session = await adb(make_session)(principal_clinician_a)
    audio = pcm(FRAME * 60, seed=12)  # 6 s
    first, second = [], []
    async with connect(_url(a, session, "stream", await adb(token_for)(principal_clinician_a, session))) as ws:
        await _read_until(ws, "Begin", first)
        for i in range(0, FRAME * 35, FRAME):
            await ws.send(audio[i : i + FRAME])
        last_ack = 0
        while last_ack < FRAME * 30:
            last_ack = (await _read_until(ws, "Ack", first))["audio_bytes_durable"]
        a.kill()  # SIGKILL mid-stream: no flush, no goodbye
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    first.append(json.loads(await ws.recv()))

    # The crashed owner's lease is still running: a plain reconnect is told
    # so (retryable); an explicit takeover proceeds at once.
    async with connect(_url(b, session, "stream", await adb(token_for)(principal_clinician_a, session))) as ws:
        refused = []
        await _read_until(ws, "Error", refused)
        assert refused[-1]["code"] == "producer_active" and refused[-1]["retryable"] is True
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 4409

    token = await adb(token_for)(principal_clinician_a, session)
    resume = f"&takeover=1&finals_received={len(_finals(first))}"
    async with connect(_url(b, session, "stream", token, resume)) as ws:
        begin = await _read_until(ws, "Begin", second)
        resume = begin["resume_from_byte"]
        assert last_ack <= resume <= FRAME * 35
        for i in range(resume, len(audio), FRAME):
            await ws.send(audio[i : i + FRAME])
        await ws.send(json.dumps({"type": "CloseStream"}))
        metadata = await _read_until(ws, "Metadata", second, seconds=20)

    stored = await adb(ConsultationSession.objects.get)(pk=session.pk)
    assert (media / stored.storage_key).read_bytes() == wav_bytes(audio, 16000)
    rows = await adb(list)(TranscriptSegment.objects.filter(session=stored).values_list("segment_id", flat=True))
    seen = _finals(first) + _finals(second)
    assert len(seen) == len(set(seen))  # no final emitted twice
    assert seen == rows  # every stored final reached the client, in order, and only those
    # The engine resumed at the last stored final with the stored audio
    # replayed: the transcript is that of an uninterrupted stream.
    assert rows == ["fake-0", "fake-2000", "fake-4000"]
    assert metadata == {"type": "Metadata", "audio_ms": 6000, "segments": len(rows)}


async def _first_message(server, session, principal):
    """Connect, read the first message (Begin or Error), disconnect."""
    async with connect(_url(server, session, "stream", await adb(token_for)(principal, session))) as ws:
        return json.loads(await ws.recv())


async def test_it_frees_a_killed_processes_quota_slot_after_the_lease(cluster, principal_clinician_a, clinic_a):
    a, b, _ = cluster
    clinic_a.quota.max_concurrent_sessions = 1
    await adb(clinic_a.quota.save)()
    one, two = await adb(make_session)(principal_clinician_a), await adb(make_session)(principal_clinician_a)
    async with connect(_url(a, one, "stream", await adb(token_for)(principal_clinician_a, one))) as ws:
        await _read_until(ws, "Begin", [])
        await ws.send(pcm(FRAME))
        a.kill()
    first = await _first_message(b, two, principal_clinician_a)
    assert first["code"] == "concurrent_sessions_exceeded"
    deadline = time.monotonic() + 15  # the lease is 2 s; a noisy machine gets plenty more
    while first["type"] != "Begin":
        assert time.monotonic() < deadline, first
        await asyncio.sleep(0.5)
        first = await _first_message(b, two, principal_clinician_a)
    # The killed session resumes without takeover once its lease is stale.
    first = await _first_message(b, one, principal_clinician_a)
    assert first["type"] == "Begin" and first["resume_from_byte"] in (0, FRAME)
