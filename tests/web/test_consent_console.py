"""The patient's consent in the console: the record page asks for it (a
required choice when the clinic requires consent), the consultation's page
shows it or records it, and the patient's withdrawal erases the
consultation after a confirmation. Another clinic's consultation is 404."""

import pytest

from clinics.models import AuditEvent
from sessions.models import ConsultationSession, TranscriptSegment
from tests.web.conftest import signed_in

pytestmark = pytest.mark.django_db


def test_it_makes_consent_a_required_choice_when_the_clinic_requires_it(clinic_a, clinician_a):
    clinic_a.consent_required = True
    clinic_a.save(update_fields=["consent_required"])
    html = signed_in(clinician_a).get("/").content.decode()
    assert 'name="consent_method" value="verbal" required' in html
    assert 'name="consent_method" value="written" required' in html


def test_it_offers_consent_without_requiring_it_when_the_clinic_does_not(clinic_a, clinician_a):
    html = signed_in(clinician_a).get("/").content.decode()
    assert 'name="consent_method" value="verbal">' in html
    assert "required" not in html.split('id="consent"', 1)[1].split("</fieldset>", 1)[0]


def test_it_records_consent_from_the_consultations_page(session_a, clinician_a):
    client = signed_in(clinician_a)
    assert 'id="consent-missing"' in client.get(f"/sessions/{session_a.pk}/").content.decode()
    response = client.post(f"/sessions/{session_a.pk}/consent/", {"method": "written", "note": "scanned"})
    assert response.status_code == 302
    session_a.refresh_from_db()
    assert session_a.consent_method == "written" and session_a.consent_note == "scanned"
    assert session_a.consent_recorded_by == f"user:{clinician_a.pk}"
    assert AuditEvent.objects.filter(action="consent.record", object_id=str(session_a.pk)).exists()
    html = client.get(f"/sessions/{session_a.pk}/").content.decode()
    assert 'id="consent-missing"' not in html and "The patient signed a consent form" in html


def test_it_records_nothing_for_a_missing_choice(session_a, clinician_a):
    response = signed_in(clinician_a).post(f"/sessions/{session_a.pk}/consent/", {"method": "nodded"})
    assert response.status_code == 302
    session_a.refresh_from_db()
    assert not session_a.has_consent


def test_it_erases_the_consultation_when_the_patient_withdraws_consent(session_a, clinician_a, tmp_media):
    client = signed_in(clinician_a)
    confirm = client.get(f"/sessions/{session_a.pk}/consent/withdraw/")
    assert confirm.status_code == 200 and 'id="confirm-withdraw"' in confirm.content.decode()
    assert ConsultationSession.objects.filter(pk=session_a.pk).exists()  # a GET changes nothing
    response = client.post(f"/sessions/{session_a.pk}/consent/withdraw/")
    assert response.status_code == 302
    assert not ConsultationSession.objects.filter(pk=session_a.pk).exists()
    assert not TranscriptSegment.objects.filter(session_id=session_a.pk).exists()
    tombstone = AuditEvent.objects.get(action="session.erase", object_id=str(session_a.pk))
    assert tombstone.details["reason"] == "consent_withdrawn"


@pytest.mark.parametrize(
    ("method", "path"), [("post", "consent/"), ("get", "consent/withdraw/"), ("post", "consent/withdraw/")]
)
def test_it_answers_404_for_another_clinics_consultation(session_a, user_b, method, path):
    response = getattr(signed_in(user_b), method)(f"/sessions/{session_a.pk}/{path}", {"method": "verbal"})
    assert response.status_code == 404
    session_a.refresh_from_db()
    assert not session_a.has_consent
