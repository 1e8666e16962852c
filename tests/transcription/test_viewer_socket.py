"""The viewer socket in-process: Begin, stored finals, live events, End."""

import asyncio

import pytest

from clinics.models import AuditEvent
from sessions.models import TranscriptSegment
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
    assert code == 1000 and messages[-1]["type"] == "End" and messages[-1]["session_id"] == str(session.pk)
    finals = [m["segment_id"] for m in messages if m["type"] == "Transcript" and m["is_final"]]
    assert finals == ["fake-2000", "fake-4000"]  # fake-0 came from the database, once
    # Relayed events carry the session's sequence numbers, in order, after Begin's.
    seqs = [m["seq"] for m in messages if "seq" in m]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] > begin["seq"]
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


async def _read_all(comm, *, until: str, seconds: float = 10.0) -> list[dict]:
    _, messages = await receive_until(comm, until, seconds=seconds)
    return messages


async def test_it_resumes_a_viewer_after_seq_with_exactly_the_events_it_missed(
    principal_clinician_a, principal_admin_a
):
    """A viewer that drops and reconnects with ``after_seq=N`` gets the
    events after N — none twice, none missed, no finals reloaded — the same
    as a viewer that stayed connected."""
    session = await adb(make_session)(principal_clinician_a)
    producer = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
    await producer.connect()
    await receive_until(producer, "Begin")
    steady = communicator(session.pk, "live", token=await atoken_for(principal_admin_a, session))
    await steady.connect()
    steady_begin, _ = await receive_until(steady, "Begin")
    first = communicator(session.pk, "live", token=await atoken_for(principal_admin_a, session))
    await first.connect()
    first_begin, _ = await receive_until(first, "Begin")

    audio = pcm(FRAME * 50, seed=9)
    for i in range(0, FRAME * 25, FRAME):
        await producer.send_to(bytes_data=audio[i : i + FRAME])
        await asyncio.sleep(0.02)
    seen_first = []
    while not any(m.get("segment_id") == "fake-0" and m.get("is_final") for m in seen_first):
        message, _ = await receive_until(first, "Transcript")
        seen_first.append(message)
    await first.disconnect()  # dropped after fake-0
    last_seq = seen_first[-1]["seq"]

    for i in range(FRAME * 25, len(audio), FRAME):  # the rest while it is away
        await producer.send_to(bytes_data=audio[i : i + FRAME])
        await asyncio.sleep(0.02)
    await producer.send_json_to({"type": "CloseStream"})
    await expect_close(producer, seconds=10)

    resumed = communicator(
        session.pk, "live", token=await atoken_for(principal_admin_a, session), query=f"after_seq={last_seq}"
    )
    await resumed.connect()
    code, after = await expect_close(resumed, seconds=10)
    assert code == 1000 and after[0]["type"] == "Begin" and after[0]["resumed"] is True
    assert after[0]["seq"] == last_seq
    code, whole = await expect_close(steady, seconds=10)
    relayed = [m for m in whole if m["type"] != "Begin" and m.get("seq", 0) > first_begin["seq"]]
    assert steady_begin["seq"] <= first_begin["seq"]
    assert [m for m in seen_first + after[1:] if m["type"] != "Begin"] == relayed
    finals = [m["segment_id"] for m in seen_first + after if m["type"] == "Transcript" and m["is_final"]]
    assert finals == ["fake-0", "fake-2000", "fake-4000"]
    await steady.disconnect()
    await resumed.disconnect()


async def test_it_reloads_the_stored_finals_when_the_relay_no_longer_holds_after_seq(
    principal_clinician_a, principal_admin_a
):
    session = await adb(make_session)(principal_clinician_a, status="ended")
    await adb(TranscriptSegment.objects.create)(
        clinic=session.clinic,
        session=session,
        segment_id="s-1",
        revision=1,
        start_ms=0,
        end_ms=900,
        text="stored",
        is_final=True,
    )
    viewer = communicator(session.pk, "live", token=await atoken_for(principal_admin_a, session), query="after_seq=41")
    await viewer.connect()
    code, messages = await expect_close(viewer)
    assert code == 1000 and messages[0]["type"] == "Begin" and messages[0]["resumed"] is False
    assert [m.get("segment_id") for m in messages if m["type"] == "Transcript"] == ["s-1"]
    assert messages[-1]["type"] == "End"


async def test_it_refuses_a_malformed_after_seq_before_spending_the_token(principal_admin_a, principal_clinician_a):
    session = await adb(make_session)(principal_clinician_a)
    token = await atoken_for(principal_admin_a, session)
    viewer = communicator(session.pk, "live", token=token, query="after_seq=-1")
    await viewer.connect()
    code, messages = await expect_close(viewer)
    assert code == 4400 and messages[-1]["code"] == "bad_query"
    again = communicator(session.pk, "live", token=token)
    await again.connect()
    begin, _ = await receive_until(again, "Begin")
    assert begin["resumed"] is False
    await again.disconnect()
