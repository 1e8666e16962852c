"""Writes through the admin go through the services: hashed keys shown once,
audit rows for tenant, quota, key and membership changes and transcript reads."""

import hashlib
import re

from django.contrib.auth import get_user_model
from django.urls import reverse

from clinics.models import ApiKey, AuditEvent, Clinic, ClinicQuota, Membership, Role
from sessions.models import ConsultationSession, TranscriptSegment


def test_it_shows_a_new_api_key_once_and_stores_only_its_hash(client_admin_a, rows_a):
    response = client_admin_a.post(
        reverse("admin:clinics_apikey_add"),
        {"clinic": str(rows_a.clinic.pk), "name": "ehr", "role": "clinician"},
        follow=True,
    )
    assert response.redirect_chain and response.status_code == 200
    texts = [str(m) for m in response.context["messages"]]
    raw = next(re.search(r"(vai_\S+)$", t).group(1) for t in texts if "vai_" in t)
    assert raw in response.content.decode()
    key = ApiKey.objects.get(clinic=rows_a.clinic, name="ehr")
    assert key.hashed_key == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {key.name, key.prefix, key.hashed_key}
    page = client_admin_a.get(reverse("admin:clinics_apikey_change", args=[key.pk])).content.decode()
    assert raw not in page and key.hashed_key not in page
    assert AuditEvent.objects.filter(clinic=rows_a.clinic, action="api_key.create", object_id=str(key.pk)).exists()


def test_it_revokes_a_key_from_its_change_page_with_an_audit_row(client_admin_a, rows_a):
    url = reverse("admin:clinics_apikey_change", args=[rows_a.api_key.pk])
    assert client_admin_a.post(url, {"revoke": "on"}).status_code == 302
    rows_a.api_key.refresh_from_db()
    assert rows_a.api_key.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_key.revoke", object_id=str(rows_a.api_key.pk)).count() == 1


def test_it_lets_a_clinic_admin_add_a_member_to_their_clinic(client_admin_a, rows_a):
    response = client_admin_a.post(
        reverse("admin:clinics_membership_add"),
        {"clinic": str(rows_a.clinic.pk), "username": "nina-nurse", "password": "long-enough-pass-42", "role": "admin"},
    )
    assert response.status_code == 302
    user = get_user_model().objects.get(username="nina-nurse")
    assert user.is_staff and not user.is_superuser
    membership = Membership.objects.get(user=user)
    assert membership.clinic == rows_a.clinic and membership.role == Role.ADMIN
    assert AuditEvent.objects.filter(clinic=rows_a.clinic, action="member.add", object_id=str(membership.pk)).exists()


def test_it_keeps_the_last_admin_of_a_clinic(client_admin_a, rows_a):
    url = reverse("admin:clinics_membership_change", args=[rows_a.membership.pk])
    response = client_admin_a.post(url, {"role": Role.CLINICIAN})
    assert response.status_code == 200
    rows_a.membership.refresh_from_db()
    assert rows_a.membership.role == Role.ADMIN


def test_it_audits_a_transcript_read_in_the_session_page(client_admin_a, rows_a, rows_b):
    page = client_admin_a.get(reverse("admin:consultations_consultationsession_change", args=[rows_a.session.pk]))
    assert page.status_code == 200
    assert rows_a.segment.text in page.content.decode()
    event = AuditEvent.objects.get(action="transcript.read", object_id=str(rows_a.session.pk))
    assert event.actor_user_id == rows_a.membership.user_id and event.clinic == rows_a.clinic
    client_admin_a.get(reverse("admin:consultations_consultationsession_change", args=[rows_b.session.pk]))
    assert not AuditEvent.objects.filter(action="transcript.read", object_id=str(rows_b.session.pk)).exists()


def test_it_keeps_transcript_text_out_of_the_segment_list(client_admin_a, rows_a):
    page = client_admin_a.get(reverse("admin:consultations_transcriptsegment_changelist")).content.decode()
    assert rows_a.segment.text not in page
    assert not AuditEvent.objects.filter(action="transcript.read").exists()


def test_it_audits_a_segment_correction_without_the_text(client_admin_a, rows_a):
    url = reverse("admin:consultations_transcriptsegment_change", args=[rows_a.segment.pk])
    assert client_admin_a.get(url).status_code == 200
    assert client_admin_a.post(url, {"text": "corrected words", "speaker": "doctor"}).status_code == 302
    segment = TranscriptSegment.objects.get(pk=rows_a.segment.pk)
    assert (segment.text, segment.speaker, segment.revision) == ("corrected words", "doctor", 1)
    assert [(r.text_before, r.text_after) for r in segment.revisions.all()] == [
        ("hello from clinic-a", "corrected words")
    ]
    correction = AuditEvent.objects.get(action="transcript.correct")
    assert correction.details["revision"] == 1 and correction.details["segment_id"] == segment.segment_id
    event = AuditEvent.objects.get(action="transcript.write")
    assert event.details["fields"] == ["speaker"]
    assert "corrected" not in str(event.details) + str(correction.details)
    assert AuditEvent.objects.filter(action="transcript.read", object_id=str(rows_a.session.pk)).count() == 1


def test_it_erases_a_session_through_the_erasure_service(client_admin_a, rows_a):
    url = reverse("admin:consultations_consultationsession_delete", args=[rows_a.session.pk])
    assert client_admin_a.post(url, {"post": "yes"}).status_code == 302
    assert not ConsultationSession.objects.filter(pk=rows_a.session.pk).exists()
    assert not TranscriptSegment.objects.filter(session_id=rows_a.session.pk).exists()
    assert AuditEvent.objects.filter(action="session.erase", object_id=str(rows_a.session.pk)).exists()


def test_it_never_lets_anyone_change_or_delete_audit_rows(client_platform, rows_a):
    event = rows_a.audit_event
    assert client_platform.get(reverse("admin:clinics_auditevent_add")).status_code == 403
    delete = client_platform.post(reverse("admin:clinics_auditevent_delete", args=[event.pk]), {"post": "yes"})
    assert delete.status_code == 403
    change = client_platform.post(reverse("admin:clinics_auditevent_change", args=[event.pk]), {"action": "x"})
    assert change.status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == "test.event"


def test_it_creates_a_clinic_with_its_quota_for_platform_staff(client_platform):
    response = client_platform.post(
        reverse("admin:clinics_clinic_add"), {"name": "Clinic C", "slug": "clinic-c", "default_language": "ja-JP"}
    )
    assert response.status_code == 302
    clinic = Clinic.objects.get(slug="clinic-c")
    assert ClinicQuota.objects.filter(clinic=clinic).exists()
    assert AuditEvent.objects.filter(clinic=clinic, action="clinic.create").exists()


def test_it_suspends_a_clinic_with_an_audit_row(client_platform, rows_a):
    response = client_platform.post(
        reverse("admin:clinics_clinic_changelist"),
        {"action": "suspend_clinics", "_selected_action": [str(rows_a.clinic.pk)]},
    )
    assert response.status_code == 302
    rows_a.clinic.refresh_from_db()
    assert rows_a.clinic.is_active is False
    assert AuditEvent.objects.filter(clinic=rows_a.clinic, action="clinic.suspend").exists()
