"""The viewer socket in-process: Begin, stored finals, live events, End."""

import asyncio

import pytest

from clinics.models import AuditEvent
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


@pytest.fixture(autouse=True)
def _media(stream_settings):
    """Socket tests run with tests/transcription/conftest.py's stream settings."""


async def test_it_sends_stored_finals_then_live_events_then_end(principal_clinician_a, principal_admin_a):
    session = await adb(make_session)(principal_clinician_a)
    producer = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
    await producer.connect()
    await receive_until(producer, "Begin")
    audio = pcm(FRAME * 50, seed=3)
    for i in range(0, FRAME * 25, FRAME):  # 2.5 s: final fake-0 is stored
        await producer.send_to(bytes_data=audio[i : i + FRAME])
    final = {"is_final": False}
    while not final.get("is_final"):
        final, _ = await receive_until(producer, "Transcript")

    viewer = communicator(session.pk, "live", token=await atoken_for(principal_admin_a, session))
    await viewer.connect()
    begin, _ = await receive_until(viewer, "Begin")
    assert begin["session_id"] == str(session.pk) and begin["status"] == "live"
    stored, _ = await receive_until(viewer, "Transcript")
    assert (stored["segment_id"], stored["is_final"]) == ("fake-0", True)

    for i in range(FRAME * 25, len(audio), FRAME):
        await producer.send_to(bytes_data=audio[i : i + FRAME])
        await asyncio.sleep(0.05)  # paced: partials reach viewers at most 5 times a second
    await producer.send_json_to({"type": "CloseStream"})
    code, _ = await expect_close(producer, seconds=10)
    assert code == 1000

    code, messages = await expect_close(viewer, seconds=10)
    assert code == 1000 and messages[-1] == {"type": "End", "session_id": str(session.pk)}
    finals = [m["segment_id"] for m in messages if m["type"] == "Transcript" and m["is_final"]]
    assert finals == ["fake-2000", "fake-4000"]  # fake-0 came from the database, once
    assert any(m["type"] == "Transcript" and not m["is_final"] for m in messages)
    views = await adb(AuditEvent.objects.filter(object_id=str(session.pk), action="transcript.live_view").count)()
    assert views == 1
    await producer.disconnect()
    await viewer.disconnect()


async def test_it_ends_at_once_for_an_ended_session(principal_clinician_a):
    session = await adb(make_session)(principal_clinician_a, status="ended")
    viewer = communicator(session.pk, "live", token=await atoken_for(principal_clinician_a, session))
    await viewer.connect()
    code, messages = await expect_close(viewer)
    assert code == 1000 and [m["type"] for m in messages] == ["Begin", "End"]


async def test_it_closes_a_viewer_that_sends_audio_with_4400(principal_clinician_a):
    session = await adb(make_session)(principal_clinician_a)
    viewer = communicator(session.pk, "live", token=await atoken_for(principal_clinician_a, session))
    await viewer.connect()
    await receive_until(viewer, "Begin")
    await viewer.send_json_to({"type": "KeepAlive"})
    await viewer.send_to(bytes_data=pcm(FRAME))
    code, messages = await expect_close(viewer)
    assert code == 4400 and messages[-1]["code"] == "unexpected_binary"
    await viewer.disconnect()


async def test_it_delivers_the_last_coalesced_partial_to_viewers_without_waiting_for_the_ticker(
    principal_clinician_a, principal_admin_a, stream_settings, monkeypatch
):
    """Partials to viewers are coalesced to a few a second; the one left
    over when the speaker pauses must still arrive (trailing edge). The
    stream's 1 s ticker is stubbed out, so only the trailing timer can
    deliver it."""

    async def no_ticker(self):
        await asyncio.Event().wait()

    monkeypatch.setattr("transcription.stream.ProducerStream._ticker", no_ticker)
    stream_settings.FAKE_ENGINE_MODE = "echo"  # one partial per frame, text = byte offset
    from transcription.engines import get_engine

    get_engine.cache_clear()
    session = await adb(make_session)(principal_clinician_a)
    producer = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
    await producer.connect()
    await receive_until(producer, "Begin")
    viewer = communicator(session.pk, "live", token=await atoken_for(principal_admin_a, session))
    await viewer.connect()
    await receive_until(viewer, "Begin")

    for i in range(3):  # three partials at once: the first goes out, the last is held back
        await producer.send_to(bytes_data=pcm(FRAME, seed=i))
    last_offset = str(FRAME * 3)
    seen = None
    while seen != last_offset:
        partial, _ = await receive_until(viewer, "Transcript", seconds=3)
        seen = partial["text"]
    assert partial["is_final"] is False
    await producer.disconnect()
    await viewer.disconnect()
