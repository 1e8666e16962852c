"""The producer socket's protocol with the consumer in-process."""

import pytest
from django.core.files.storage import default_storage

from clinics.models import AuditEvent
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
from transcription.audio import wav_bytes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    settings.AUDIO_FLUSH_SECONDS = 0.2
    settings.FAKE_ENGINE_MODE = "script"
    settings.FAKE_ENGINE_DELAY_MS = 0
    from transcription.engines import get_engine

    get_engine.cache_clear()


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
