"""The admin's session page plays the sealed recording, scoped and audited
like the API's audio."""

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from clinics.models import AuditEvent
from sessions import storage_keys
from sessions.audio import wav_header
from sessions.models import ConsultationSession


def _sealed(session: ConsultationSession) -> bytes:
    wav = wav_header(32_000, 16000) + b"\1\0" * 16_000
    key = storage_keys.audio_wav_key(session)
    default_storage.save(key, ContentFile(wav))
    ConsultationSession.objects.filter(pk=session.pk).update(
        storage_key=key, status="ended", audio_bytes=32_000, audio_duration_ms=1000
    )
    return wav


def test_it_plays_the_sealed_audio_on_the_admins_session_page(client_admin_a, rows_a, tmp_media):
    wav = _sealed(rows_a.session)
    url = f"/admin/consultations/consultationsession/{rows_a.session.pk}/audio/"
    page = client_admin_a.get(f"/admin/consultations/consultationsession/{rows_a.session.pk}/change/")
    assert f'<audio controls preload="none" src="{url}"' in page.content.decode()
    response = client_admin_a.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
    assert b"".join(response.streaming_content) == wav
    read = AuditEvent.objects.get(action="audio.read", object_id=str(rows_a.session.pk))
    assert read.details["bytes"] == len(wav)


def test_it_answers_404_for_another_clinics_audio(client_admin_a, rows_a, rows_b, tmp_media):
    _sealed(rows_b.session)
    response = client_admin_a.get(f"/admin/consultations/consultationsession/{rows_b.session.pk}/audio/")
    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action="audio.read").exists()


def test_it_lists_sessions_without_the_clinic_column_for_a_one_clinic_admin(client_admin_a, rows_a):
    page = client_admin_a.get("/admin/consultations/consultationsession/").content.decode()
    assert "column-clinic" not in page and "column-short_id" in page and "column-length" in page
    assert str(rows_a.session.pk)[:8] in page
