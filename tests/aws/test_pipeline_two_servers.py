"""Done-when test: more sessions than the engine quota across two real
server processes sharing Redis. With one upstream stream allowed, the
session on the second server hears ``Queued`` and is transcribed — all of
its audio — once the first session's stream frees the slot."""

import asyncio
import json

import pytest
import redis
import websockets
from django.conf import settings

from tests.aws.conftest import numbered_chunks, words
from tests.servers import requires_shared_database, server_factory  # noqa: F401
from tests.transcription.helpers import adb, atoken_for, make_session

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, requires_shared_database()]

QUOTA_PREFIX = "voiceai:engine-quota"


@pytest.fixture
def clean_quota_keys():
    if not settings.REDIS_URL:
        pytest.skip("the cross-process quota needs REDIS_URL")
    client = redis.Redis.from_url(settings.REDIS_URL)

    def clean():
        keys = list(client.scan_iter(f"{QUOTA_PREFIX}:*"))
        if keys:
            client.delete(*keys)

    clean()
    yield
    clean()


async def _connect(server, principal, session):
    token = await atoken_for(principal, session)
    ws = await websockets.connect(f"{server.ws_url}/ws/v1/sessions/{session.pk}/stream?token={token}")
    begin = json.loads(await asyncio.wait_for(ws.recv(), 15))
    assert begin["type"] == "Begin", begin
    return ws


async def _read_until(ws, kind, seen, limit=20):
    async with asyncio.timeout(limit):
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                continue
            payload = json.loads(message)
            seen.append(payload)
            if payload["type"] == kind:
                return payload


def _finals(messages):
    return " ".join(m["text"] for m in messages if m["type"] == "Transcript" and m["is_final"]).split()


async def test_it_queues_over_the_quota_across_two_processes_then_transcribes(
    clean_quota_keys,
    server_factory,  # noqa: F811
    transcribe_standin,
    standin_cert,
    principal_clinician_a,
    principal_b,
):
    env = {
        "TRANSCRIPTION_ENGINE": "aws",
        "AWS_TRANSCRIBE_ENDPOINT_URL": transcribe_standin.url,
        "AWS_TRANSCRIBE_REGIONS": "ap-northeast-1",
        "ENGINE_STREAMS_PER_REGION": "1",
        "SSL_CERT_FILE": standin_cert[0],
        "AWS_ACCESS_KEY_ID": "AKIDSTANDIN",
        "AWS_SECRET_ACCESS_KEY": "standin-secret",
        "AUDIO_FLUSH_SECONDS": "0.2",
    }
    one, two = server_factory(env=env), server_factory(env=env)
    first = await adb(make_session)(principal_clinician_a, engine="aws")
    second = await adb(make_session)(principal_b, engine="aws")

    ws1 = await _connect(one, principal_clinician_a, first)
    for chunk in numbered_chunks(5, first=100):
        await ws1.send(chunk)
    seen1: list[dict] = []
    await _read_until(ws1, "Transcript", seen1)  # upstream is live for session 1

    ws2 = await _connect(two, principal_b, second)
    seen2: list[dict] = []
    queued = await _read_until(ws2, "Queued", seen2)
    assert queued == {"type": "Queued", "position": 1}
    for chunk in numbered_chunks(8):
        await ws2.send(chunk)
    await asyncio.sleep(0.5)
    assert [r.region for r in transcribe_standin.requests] == ["ap-northeast-1"]  # still one upstream stream

    await ws1.send(json.dumps({"type": "CloseStream"}))
    await _read_until(ws1, "Metadata", seen1)
    assert _finals(seen1) == words(5, 100)
    await ws1.close()

    await ws2.send(json.dumps({"type": "CloseStream"}))
    await _read_until(ws2, "Metadata", seen2)
    await ws2.close()
    assert _finals(seen2) == words(8)
    assert len(transcribe_standin.requests) == 2
    assert bytes(transcribe_standin.requests[1].audio) == b"".join(numbered_chunks(8))
