"""Storage quota: session create and batch upload are refused with 429
``storage_quota_exceeded`` once the clinic's stored audio reaches its limit;
another clinic's storage never counts."""

import io
import wave

from django.core.files.uploadedfile import SimpleUploadedFile

from sessions.models import ConsultationSession, SessionStatus
from tests.api.conftest import error_code


def _fill_storage(clinic, *, stored: int, limit: int) -> None:
    ConsultationSession.objects.create(
        clinic=clinic, language="en-US", engine="fake", status=SessionStatus.ENDED, audio_bytes=stored
    )
    clinic.quota.storage_bytes = limit
    clinic.quota.save()


def _wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\x01\x02" * 1600)
    return buffer.getvalue()


def test_it_refuses_a_session_when_the_clinics_storage_is_full(client_a, client_b, clinic_a, clinic_b):
    _fill_storage(clinic_a, stored=5000, limit=5001)
    assert client_a.post("/api/v1/sessions/", {}, format="json").status_code == 201
    _fill_storage(clinic_a, stored=1, limit=5001)  # now 5001 stored: at the limit
    response = client_a.post("/api/v1/sessions/", {}, format="json")
    assert response.status_code == 429 and error_code(response) == "storage_quota_exceeded"
    assert ConsultationSession.objects.filter(clinic=clinic_a).count() == 3
    # Clinic A's audio does not count against clinic B.
    _fill_storage(clinic_b, stored=0, limit=5001)
    assert client_b.post("/api/v1/sessions/", {}, format="json").status_code == 201


def test_it_refuses_a_batch_upload_when_the_clinics_storage_is_full(tmp_media, client_a, clinic_a):
    _fill_storage(clinic_a, stored=5000, limit=5000)
    upload = SimpleUploadedFile("visit.wav", _wav(), content_type="audio/wav")
    response = client_a.post("/api/v1/transcriptions/", {"file": upload}, format="multipart")
    assert response.status_code == 429 and error_code(response) == "storage_quota_exceeded"
    assert ConsultationSession.objects.filter(clinic=clinic_a).count() == 1
    assert not ConsultationSession.objects.filter(source="batch").exists()
