"""The patient's consent over REST: recorded with the session or on its own
(who, when, how, an optional note), audited, once per session; withdrawn,
it erases the session like an erasure does and leaves the tombstone. The
clinic decides whether it is required; an upload to a clinic that requires
it must carry it."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from clinics.models import AuditEvent
from clinics.services import clinic_create
from sessions import storage_keys
from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment
from tests.api.conftest import error_code, wav_bytes


@pytest.fixture
def consent_required(clinic_a):
    clinic_a.consent_required = True
    clinic_a.save(update_fields=["consent_required"])
    return clinic_a


def test_it_requires_consent_in_new_clinics(db):
    assert clinic_create(name="New", slug="new-clinic").consent_required is True


def test_it_records_consent_with_the_session(client_a, key_a, api_key_a_clinician):
    response = client_a.post(
        "/api/v1/sessions/", {"consent_method": "written", "consent_note": "form in chart"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["consent_method"] == "written" and body["consent_note"] == "form in chart"
    assert body["consent_recorded_at"]
    assert body["consent_recorded_by"] == f"api-key:{api_key_a_clinician.split('_')[1]}"
    event = AuditEvent.objects.get(action="consent.record", object_id=body["id"])
    assert event.details == {"method": "written", "note": True}  # never the note's text


def test_it_records_consent_once_and_audits_it(client_a, session_a):
    url = f"/api/v1/sessions/{session_a.pk}/consent/"
    response = client_a.post(url, {"method": "verbal"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["consent_method"] == "verbal" and response.json()["consent_note"] == ""
    session_a.refresh_from_db()
    assert session_a.has_consent
    assert AuditEvent.objects.filter(action="consent.record", object_id=str(session_a.pk)).count() == 1

    again = client_a.post(url, {"method": "written"}, format="json")
    assert again.status_code == 409 and error_code(again) == "consent_recorded"
    session_a.refresh_from_db()
    assert session_a.consent_method == "verbal"


@pytest.mark.parametrize(
    "body",
    [{}, {"method": "nodded"}, {"method": 1}, {"method": "verbal", "note": 5}, {"method": "verbal", "note": "x" * 501}],
)
def test_it_answers_400_to_bad_consent(client_a, session_a, body):
    response = client_a.post(f"/api/v1/sessions/{session_a.pk}/consent/", body, format="json")
    assert response.status_code == 400 and error_code(response) == "invalid"
    session_a.refresh_from_db()
    assert not session_a.has_consent


def test_it_answers_400_to_a_consent_note_without_a_method(client_a):
    response = client_a.post("/api/v1/sessions/", {"consent_note": "yes"}, format="json")
    assert response.status_code == 400 and error_code(response) == "invalid"
    assert not ConsultationSession.objects.exists()


@pytest.mark.parametrize("method", ["post", "delete"])
def test_it_answers_404_for_another_clinics_session(client_b, session_a, segments_a, method):
    response = getattr(client_b, method)(
        f"/api/v1/sessions/{session_a.pk}/consent/", {"method": "verbal"}, format="json"
    )
    assert response.status_code == 404 and error_code(response) == "not_found"
    session_a.refresh_from_db()
    assert not session_a.has_consent
    assert TranscriptSegment.objects.filter(session=session_a).count() == 3


def test_it_erases_the_session_when_consent_is_withdrawn(client_a, session_a, segments_a, audio_a, tmp_media):
    """A clinician may carry out the patient's withdrawal (an administrative
    erasure is an admin's): audio, transcript and row go, the tombstone stays."""
    prefix_dir = tmp_media / storage_keys.session_prefix(session_a)
    assert any(prefix_dir.rglob("*"))
    response = client_a.delete(f"/api/v1/sessions/{session_a.pk}/consent/")
    assert response.status_code == 204, response.content
    assert not prefix_dir.exists() or not any(p.is_file() for p in prefix_dir.rglob("*"))
    assert not ConsultationSession.objects.filter(pk=session_a.pk).exists()
    assert not TranscriptSegment.objects.filter(session_id=session_a.pk).exists()
    tombstone = AuditEvent.objects.get(action="session.erase", object_id=str(session_a.pk))
    assert tombstone.details == {"storage_objects": 2, "segments": 3, "reason": "consent_withdrawn"}
    assert AuditEvent.objects.filter(action="consent.withdraw", object_id=str(session_a.pk)).exists()
    assert client_a.get(f"/api/v1/sessions/{session_a.pk}/").status_code == 404


def test_it_ends_a_live_session_before_erasing_it_on_withdrawal(client_a, session_a, audio_a):
    session_a.status = SessionStatus.LIVE
    session_a.save(update_fields=["status"])
    response = client_a.delete(f"/api/v1/sessions/{session_a.pk}/consent/")
    assert response.status_code == 204, response.content
    assert not ConsultationSession.objects.filter(pk=session_a.pk).exists()
    assert AuditEvent.objects.filter(action="session.end", object_id=str(session_a.pk)).exists()


def test_it_keeps_everything_when_storage_fails_during_withdrawal(client_a, session_a, segments_a, monkeypatch):
    def unavailable(prefix):
        raise OSError("disk gone")

    monkeypatch.setattr("sessions.services.storage_delete_prefix", unavailable)
    response = client_a.delete(f"/api/v1/sessions/{session_a.pk}/consent/")
    assert response.status_code == 503 and error_code(response) == "storage_unavailable"
    assert TranscriptSegment.objects.filter(session_id=session_a.pk).count() == 3
    assert not AuditEvent.objects.filter(action__in=["session.erase", "consent.withdraw"]).exists()


def test_it_refuses_an_upload_without_consent_when_the_clinic_requires_it(client_a, consent_required, tmp_media):
    upload = SimpleUploadedFile("visit.wav", wav_bytes(), content_type="audio/wav")
    response = client_a.post("/api/v1/transcriptions/", {"file": upload}, format="multipart")
    assert response.status_code == 409 and error_code(response) == "consent_required"
    assert not ConsultationSession.objects.exists()
    assert not any(p.is_file() for p in tmp_media.rglob("*"))


def test_it_lets_a_clinic_admin_turn_the_requirement_on_and_off(client_a_admin, client_a, clinic_a):
    response = client_a_admin.patch("/api/v1/clinic/", {"consent_required": True}, format="json")
    assert response.status_code == 200 and response.json()["consent_required"] is True
    clinic_a.refresh_from_db()
    assert clinic_a.consent_required is True
    assert AuditEvent.objects.filter(action="clinic.update").exists()

    bad = client_a_admin.patch("/api/v1/clinic/", {"consent_required": "yes"}, format="json")
    assert bad.status_code == 400 and error_code(bad) == "invalid"
    refused = client_a.patch("/api/v1/clinic/", {"consent_required": False}, format="json")
    assert refused.status_code == 403
    clinic_a.refresh_from_db()
    assert clinic_a.consent_required is True
