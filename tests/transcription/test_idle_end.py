"""A session ended over REST reaches an idle producer and an idle viewer at
once, however long they were idle: longer than every Redis and socket
timeout in play (redis-py's 5 s socket timeout, the relay reader's 5 s read
timeout and 10 s ping). The old channel-layer listener died silently on the
first such timeout, stranding the producer's audio and closing viewers with
1011 (measured-facts.md, "Idle receive race")."""

import asyncio
import time

import pytest

from sessions.models import SessionStatus
from sessions.services import session_end
from tests.transcription.helpers import (
    FRAME,
    adb,
    atoken_for,
    communicator,
    expect_close,
    make_session,
    pcm,
    receive_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

IDLE_SECONDS = 12.0  # > every timeout above; KeepAlive keeps the stream's own idle timeout (15 s) away


@pytest.fixture(autouse=True)
def _media(stream_settings):
    """Socket tests run with tests/transcription/conftest.py's stream settings."""


async def test_it_seals_and_closes_an_idle_producer_and_viewer_within_a_second_of_a_rest_end(
    principal_clinician_a, principal_admin_a, settings
):
    assert settings.REDIS_URL, "this test is about the Redis relay: run it with REDIS_URL (make test does)"
    session = await adb(make_session)(principal_clinician_a)
    producer = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
    await producer.connect()
    await receive_until(producer, "Begin")
    viewer = communicator(session.pk, "live", token=await atoken_for(principal_admin_a, session))
    await viewer.connect()
    await receive_until(viewer, "Begin")
    audio = pcm(FRAME * 10, seed=5)
    for i in range(0, len(audio), FRAME):
        await producer.send_to(bytes_data=audio[i : i + FRAME])
    ack = {"audio_bytes_durable": 0}
    while ack["audio_bytes_durable"] < len(audio):
        ack, _ = await receive_until(producer, "Ack")

    idle_until = time.monotonic() + IDLE_SECONDS
    while time.monotonic() < idle_until:
        await asyncio.sleep(3.0)
        await producer.send_json_to({"type": "KeepAlive"})
        await viewer.send_json_to({"type": "KeepAlive"})

    await adb(session_end)(principal=principal_clinician_a, session=session)
    # The old listener never woke up: these waits would time out.
    code, messages = await expect_close(producer, seconds=5)
    assert code == 1000 and messages[-1]["type"] == "Metadata" and messages[-1]["audio_ms"] == 1000
    code, seen = await expect_close(viewer, seconds=5)
    assert code == 1000 and seen[-1]["type"] == "End"
    stored = await adb(type(session).objects.get)(pk=session.pk)
    assert stored.status == SessionStatus.ENDED and stored.audio_bytes == len(audio) and stored.audio_sha256
    await producer.disconnect()
    await viewer.disconnect()
