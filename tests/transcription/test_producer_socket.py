"""The producer socket's protocol with the consumer in-process."""

import pytest
from django.core.files.storage import default_storage

from clinics.models import AuditEvent
from sessions.audio import wav_bytes
from sessions.models import SessionStatus, TranscriptSegment
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
from transcription import relay
from transcription.live_state import get_live_store

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _media(stream_settings):
    """Socket tests run with tests/transcription/conftest.py's stream settings."""


@pytest.fixture
def session_a(principal_clinician_a):
    return make_session(principal_clinician_a)


async def test_it_streams_audio_and_returns_begin_transcripts_acks_and_metadata(principal_clinician_a, session_a):
    comm = communicator(session_a.pk, token=await atoken_for(principal_clinician_a, session_a))
    connected, _ = await comm.connect()
    assert connected
    begin, _ = await receive_until(comm, "Begin")
    assert begin == {
        "type": "Begin",
        "session_id": str(session_a.pk),
        "protocol": 1,
        "sample_rate": 16000,
        "resume_from_byte": 0,
    }
    audio = pcm(FRAME * 45, seed=1)  # 4.5 s
    for i in range(0, len(audio), FRAME):
        await comm.send_to(bytes_data=audio[i : i + FRAME])
    ack, seen = await receive_until(comm, "Ack")
    assert 0 < ack["audio_bytes_durable"] <= len(audio)
    await comm.send_json_to({"type": "CloseStream"})
    code, rest = await expect_close(comm, seconds=10)
    assert code == 1000
    messages = seen + rest
    metadata = messages[-1]
    assert metadata == {"type": "Metadata", "audio_ms": 4500, "segments": 3}
    finals = [m for m in messages if m["type"] == "Transcript" and m["is_final"]]
    assert [f["segment_id"] for f in finals] == ["fake-0", "fake-2000", "fake-4000"]
    assert any(m["type"] == "Transcript" and not m["is_final"] for m in messages)
    await comm.disconnect()

    session = await adb(type(session_a).objects.get)(pk=session_a.pk)
    assert session.status == SessionStatus.ENDED
    assert session.audio_bytes == len(audio) and session.audio_duration_ms == 4500
    with default_storage.open(session.storage_key, "rb") as fh:
        stored = fh.read()
    assert stored == wav_bytes(audio, 16000)
    import hashlib

    assert session.audio_sha256 == hashlib.sha256(stored).hexdigest()
    rows = await adb(list)(TranscriptSegment.objects.filter(session=session).values_list("segment_id", flat=True))
    assert rows == ["fake-0", "fake-2000", "fake-4000"]
    actions = await adb(list)(AuditEvent.objects.filter(object_id=str(session.pk)).values_list("action", flat=True))
    for action in ("stream.start", "stream.stop", "audio.write", "transcript.write"):
        assert actions.count(action) == 1, action


async def _connect(session, principal, *, query: str = ""):
    comm = communicator(session.pk, token=await atoken_for(principal, session), query=query)
    connected, _ = await comm.connect()
    assert connected
    return comm


async def test_it_resumes_from_the_durable_offset_byte_for_byte_after_a_drop(principal_clinician_a, session_a):
    audio = pcm(FRAME * 40, seed=2)  # 4 s
    comm = await _connect(session_a, principal_clinician_a)
    await receive_until(comm, "Begin")
    for i in range(0, FRAME * 25, FRAME):
        await comm.send_to(bytes_data=audio[i : i + FRAME])
    ack = {"audio_bytes_durable": 0}
    while ack["audio_bytes_durable"] < FRAME * 25:
        ack, _ = await receive_until(comm, "Ack")
    await comm.disconnect()  # dropped: no CloseStream

    comm = await _connect(session_a, principal_clinician_a)
    begin, _ = await receive_until(comm, "Begin")
    resume = begin["resume_from_byte"]
    assert resume == FRAME * 25
    for i in range(resume, len(audio), FRAME):
        await comm.send_to(bytes_data=audio[i : i + FRAME])
    await comm.send_json_to({"type": "CloseStream"})
    code, messages = await expect_close(comm, seconds=10)
    assert code == 1000
    finals = [m["segment_id"] for m in messages if m["type"] == "Transcript" and m["is_final"]]
    # fake-0 was stored before the drop: never sent again. The engine resumed
    # where it ended (2 s) with the stored audio replayed up to 2.5 s, so the
    # finals are those of an uninterrupted stream.
    assert finals == ["fake-2000"]
    session = await adb(type(session_a).objects.get)(pk=session_a.pk)
    with default_storage.open(session.storage_key, "rb") as fh:
        assert fh.read() == wav_bytes(audio, 16000)
    ids = await adb(list)(TranscriptSegment.objects.filter(session=session).values_list("segment_id", flat=True))
    assert len(ids) == len(set(ids)) and ids[0] == "fake-0"
    assert messages[-1] == {"type": "Metadata", "audio_ms": 4000, "segments": len(ids)}


async def test_it_acks_only_persisted_audio(principal_clinician_a, session_a, settings):
    settings.AUDIO_FLUSH_SECONDS = 30.0  # no timed flush: only the 3 s inline flush persists
    comm = await _connect(session_a, principal_clinician_a)
    await receive_until(comm, "Begin")
    for i in range(10):
        await comm.send_to(bytes_data=pcm(FRAME, seed=i))
    ack, _ = await receive_until(comm, "Ack", seconds=3)
    assert ack["audio_bytes_durable"] == 0  # liveness Ack: nothing stored yet
    for i in range(25):
        await comm.send_to(bytes_data=pcm(FRAME, seed=i))
    while ack["audio_bytes_durable"] == 0:
        ack, _ = await receive_until(comm, "Ack", seconds=3)
    parts = default_storage.listdir(f"{session_a.clinic_id}/{session_a.pk}/parts/")[1]
    assert ack["audio_bytes_durable"] == FRAME * 30  # the inline flush at 3 s of unacked audio
    assert parts == [f"{0:015d}-{FRAME * 30:015d}.pcm"]
    await comm.disconnect()


async def test_it_finalizes_pending_audio_on_request(principal_clinician_a, session_a):
    comm = await _connect(session_a, principal_clinician_a)
    await receive_until(comm, "Begin")
    for i in range(7):
        await comm.send_to(bytes_data=pcm(FRAME, seed=i))
    await comm.send_json_to({"type": "Finalize"})
    final, _ = await receive_until(comm, "Transcript")
    while not final["is_final"]:
        final, _ = await receive_until(comm, "Transcript")
    assert (final["segment_id"], final["start_ms"], final["end_ms"]) == ("fake-0", 0, 700)
    await comm.send_json_to({"type": "KeepAlive"})
    await comm.send_to(bytes_data=pcm(FRAME, seed=9))
    await comm.send_json_to({"type": "CloseStream"})
    code, messages = await expect_close(comm, seconds=10)
    assert code == 1000 and messages[-1]["type"] == "Metadata"


async def test_it_closes_an_idle_stream_with_4408(principal_clinician_a, session_a, settings):
    settings.STREAM_IDLE_TIMEOUT_SECONDS = 0.5
    comm = await _connect(session_a, principal_clinician_a)
    code, messages = await expect_close(comm, seconds=5)
    assert code == 4408
    assert messages[-1] == {
        "type": "Error",
        "code": "idle_timeout",
        "message": "No audio or KeepAlive received.",
        "retryable": False,
    }
    await comm.disconnect()


async def test_it_refuses_an_ended_session_with_4409(principal_clinician_a, session_a):
    session_a.status = SessionStatus.ENDED
    await adb(session_a.save)()
    comm = await _connect(session_a, principal_clinician_a)
    code, messages = await expect_close(comm)
    assert code == 4409 and messages[-1]["code"] == "session_ended"


async def test_it_refuses_a_second_producer_unless_it_takes_over(principal_clinician_a, session_a):
    first = await _connect(session_a, principal_clinician_a)
    await receive_until(first, "Begin")
    await first.send_to(bytes_data=pcm(FRAME))

    second = await _connect(session_a, principal_clinician_a)
    code, messages = await expect_close(second)
    assert code == 4409 and messages[-1]["code"] == "producer_active" and messages[-1]["retryable"] is True

    third = await _connect(session_a, principal_clinician_a, query="takeover=1")
    await receive_until(third, "Begin")
    code, messages = await expect_close(first)
    assert code == 4409 and messages[-1]["code"] == "taken_over"
    await third.send_to(bytes_data=pcm(FRAME, seed=5))
    await third.send_json_to({"type": "CloseStream"})
    code, _ = await expect_close(third, seconds=10)
    assert code == 1000
    for comm in (first, second, third):
        await comm.disconnect()


async def test_it_ignores_a_late_takeover_of_the_producer_it_replaced(principal_clinician_a, session_a):
    # The producer a takeover replaced may announce its own, older takeover
    # only after the newer one read its relay position: that one streams on.
    first = await _connect(session_a, principal_clinician_a)
    await receive_until(first, "Begin")
    state = await get_live_store().snapshot(clinic_id=session_a.clinic_id, session_id=session_a.pk)
    second = await _connect(session_a, principal_clinician_a, query="takeover=1")
    await receive_until(second, "Begin")
    code, _ = await expect_close(first)
    assert code == 4409
    await adb(relay.publish_sync)(
        session_a.clinic_id, relay.control_log(session_a.pk), {"type": "stream.takeover", "owner": state["owner"]}
    )
    await second.send_to(bytes_data=pcm(FRAME))
    await second.send_json_to({"type": "CloseStream"})
    code, _ = await expect_close(second, seconds=10)
    assert code == 1000
    for comm in (first, second):
        await comm.disconnect()


async def test_it_enforces_the_clinics_concurrent_session_quota_with_4429(principal_clinician_a, clinic_a):
    clinic_a.quota.max_concurrent_sessions = 1
    await adb(clinic_a.quota.save)()
    one, two = await adb(make_session)(principal_clinician_a), await adb(make_session)(principal_clinician_a)
    first = await _connect(one, principal_clinician_a)
    await receive_until(first, "Begin")
    second = await _connect(two, principal_clinician_a)
    code, messages = await expect_close(second)
    assert code == 4429 and messages[-1]["code"] == "concurrent_sessions_exceeded"
    await first.send_json_to({"type": "CloseStream"})
    await expect_close(first, seconds=10)
    # The slot is free again once the first stream is gone.
    third = await _connect(two, principal_clinician_a)
    begin, _ = await receive_until(third, "Begin")
    assert begin["resume_from_byte"] == 0
    for comm in (first, second, third):
        await comm.disconnect()


async def test_it_closes_the_producer_when_the_session_is_ended_over_rest(principal_clinician_a, session_a):
    from sessions.services import session_end

    comm = await _connect(session_a, principal_clinician_a)
    await receive_until(comm, "Begin")
    for i in range(12):
        await comm.send_to(bytes_data=pcm(FRAME, seed=i))
    await receive_until(comm, "Ack")
    await adb(session_end)(principal=principal_clinician_a, session=session_a)
    code, messages = await expect_close(comm, seconds=10)
    assert code == 1000 and messages[-1] == {"type": "Metadata", "audio_ms": 1200, "segments": 1}
    session = await adb(type(session_a).objects.get)(pk=session_a.pk)
    assert session.status == SessionStatus.ENDED and session.audio_bytes == FRAME * 12
    await comm.disconnect()


async def test_it_drains_on_shutdown_with_1012_after_storing_what_arrived(principal_clinician_a, session_a):
    from transcription.stream_registry import ACTIVE_STREAMS

    comm = await _connect(session_a, principal_clinician_a)
    await receive_until(comm, "Begin")
    for i in range(5):
        await comm.send_to(bytes_data=pcm(FRAME, seed=i))
    await comm.send_json_to({"type": "KeepAlive"})
    await receive_until(comm, "Ack")
    streams = [s for s in list(ACTIVE_STREAMS) if s.session.pk == session_a.pk]
    assert len(streams) == 1
    await streams[0].go_away()
    code, messages = await expect_close(comm)
    assert code == 1012 and messages[-1]["code"] == "server_going_away" and messages[-1]["retryable"] is True
    await comm.disconnect()
    resumed = await _connect(session_a, principal_clinician_a)
    begin, _ = await receive_until(resumed, "Begin")
    assert begin["resume_from_byte"] == FRAME * 5
    await resumed.disconnect()


async def test_it_seals_a_session_ended_over_rest_without_a_producer(principal_clinician_a, session_a):
    from sessions.services import session_seal

    audio = pcm(FRAME * 12, seed=7)
    comm = await _connect(session_a, principal_clinician_a)
    await receive_until(comm, "Begin")
    for i in range(0, len(audio), FRAME):
        await comm.send_to(bytes_data=audio[i : i + FRAME])
    ack = {"audio_bytes_durable": 0}
    while ack["audio_bytes_durable"] < len(audio):
        ack, _ = await receive_until(comm, "Ack")
    await comm.disconnect()  # dropped; the clinician then ends the session in the web app

    sealed = await adb(session_seal)(principal=principal_clinician_a, session_id=session_a.pk, drop_parts=False)
    again = await adb(session_seal)(principal=principal_clinician_a, session_id=session_a.pk)
    assert sealed.audio_bytes == again.audio_bytes == len(audio) and sealed.sha256 == again.sha256
    session = await adb(type(session_a).objects.get)(pk=session_a.pk)
    assert session.status == SessionStatus.ENDED
    with default_storage.open(session.storage_key, "rb") as fh:
        assert fh.read() == wav_bytes(audio, 16000)
    transcript = default_storage.open(f"{session_a.clinic_id}/{session_a.pk}/transcript.json").read()
    assert b'"segments"' in transcript


async def test_it_never_holds_more_than_5_s_of_unacknowledged_audio_under_a_flood(
    principal_clinician_a, session_a, settings
):
    import asyncio

    from transcription.stream_registry import ACTIVE_STREAMS

    settings.AUDIO_FLUSH_SECONDS = 30.0  # only the backpressure flush can persist
    comm = await _connect(session_a, principal_clinician_a)
    await receive_until(comm, "Begin")
    (stream,) = [s for s in list(ACTIVE_STREAMS) if s.session.pk == session_a.pk]
    worst = 0
    for i in range(150):  # 15 s of audio, as fast as the socket takes it
        await comm.send_to(bytes_data=pcm(FRAME, seed=i))
        await asyncio.sleep(0)
        worst = max(worst, stream.received - stream.durable)
    ack = {"audio_bytes_durable": 0}
    while ack["audio_bytes_durable"] < FRAME * 120:
        ack, _ = await receive_until(comm, "Ack")
        worst = max(worst, stream.received - stream.durable)
    assert 0 < worst <= 5 * 32000
    await comm.disconnect()
