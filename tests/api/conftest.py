"""Objects of clinic A that the API tests read, change and probe."""

import io
import wave

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from clinics.models import ApiKey, Membership
from sessions import storage_keys
from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment
from tests.servers import server_factory  # noqa: F401  (fixture for real-process tests)


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        # A ramp, so every byte range has distinct content.
        wav.writeframes(bytes(i % 251 for i in range(int(seconds * rate) * 2)))
    return buffer.getvalue()


@pytest.fixture
def session_a(clinic_a, clinician_a) -> ConsultationSession:
    return ConsultationSession.objects.create(
        clinic=clinic_a, created_by=clinician_a, language="en-US", engine="fake", external_ref="visit-1"
    )


@pytest.fixture
def segments_a(session_a) -> list[TranscriptSegment]:
    rows = [
        ("s1", 0, 1500, "Good morning, how are you feeling?", "clinician", 0.93, True),
        ("s2", 1600, 3250, "A little <better> & rested.", "patient", 0.88, True),
        ("s3", 3300, 3900, "interim words", "", None, False),
    ]
    return [
        TranscriptSegment.objects.create(
            clinic=session_a.clinic,
            session=session_a,
            segment_id=seg,
            start_ms=start,
            end_ms=end,
            text=text,
            speaker=speaker,
            confidence=conf,
            is_final=final,
        )
        for seg, start, end, text, speaker, conf, final in rows
    ]


@pytest.fixture
def audio_a(tmp_media, session_a) -> bytes:
    data = wav_bytes()
    default_storage.save(storage_keys.audio_wav_key(session_a), ContentFile(data))
    # A nested object too, so erasure must recurse.
    default_storage.save(f"{storage_keys.session_prefix(session_a)}parts/part-0.pcm", ContentFile(b"\0" * 320))
    session_a.audio_bytes = len(data)
    session_a.save(update_fields=["audio_bytes"])
    return data


@pytest.fixture
def ended_session_a(session_a) -> ConsultationSession:
    session_a.status = SessionStatus.ENDED
    session_a.save(update_fields=["status"])
    return session_a


@pytest.fixture
def client_a(api_client_for, api_key_a_clinician):
    return api_client_for(api_key_a_clinician)


@pytest.fixture
def client_a_admin(api_client_for, api_key_a_admin):
    return api_client_for(api_key_a_admin)


@pytest.fixture
def client_b(api_client_for, api_key_b):
    return api_client_for(api_key_b)


@pytest.fixture
def key_a(api_key_a_admin) -> ApiKey:
    return ApiKey.objects.get(prefix=api_key_a_admin.split("_")[1])


@pytest.fixture
def membership_clinician_a(clinician_a) -> Membership:
    return Membership.objects.get(user=clinician_a)


def error_code(response) -> str:
    return response.json()["error"]["code"]


def streamed_body(response) -> bytes:
    """The body of a response streamed with an async iterator (as the
    audio endpoint does for ASGI servers)."""
    from asgiref.sync import async_to_sync

    assert response.is_async

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()
