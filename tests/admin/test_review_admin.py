"""The admin shows issue 13's speaker roles (on the session) and the
low-confidence review (on segments: needs review, who checked it and when);
platform staff set a clinic's threshold. Saving a corrected text in the
admin goes through the correction service, which clears the flag."""

from django.urls import reverse

from clinics.access import Principal
from clinics.models import Role
from sessions.models import TranscriptSegment
from sessions.services import speaker_roles_set


def test_it_shows_the_speaker_roles_on_the_session(client_admin_a, rows_a, admin_a):
    principal = Principal(clinic=rows_a.clinic, role=Role.ADMIN, user=admin_a)
    speaker_roles_set(principal=principal, session=rows_a.session, roles={"spk_0": "patient"})
    url = reverse("admin:consultations_consultationsession_change", args=[rows_a.session.pk])
    html = client_admin_a.get(url).content.decode()
    assert "Speaker roles" in html and "spk_0" in html and f"user:{admin_a.pk}" in html


def test_it_shows_the_review_state_and_clears_it_with_a_correction(client_admin_a, rows_a):
    TranscriptSegment.objects.filter(pk=rows_a.segment.pk).update(confidence=0.2)
    changelist = client_admin_a.get(reverse("admin:consultations_transcriptsegment_changelist")).content.decode()
    flagged = 'class="field-needs_review"><img src="/static/admin/img/icon-yes.svg"'
    assert "Needs review" in changelist and flagged in changelist
    url = reverse("admin:consultations_transcriptsegment_change", args=[rows_a.segment.pk])
    assert "Reviewed by" in client_admin_a.get(url).content.decode()
    assert client_admin_a.post(url, {"text": "corrected words", "speaker": ""}).status_code == 302
    segment = TranscriptSegment.objects.get(pk=rows_a.segment.pk)
    assert segment.reviewed_at is not None and segment.reviewed_by
    changelist = client_admin_a.get(reverse("admin:consultations_transcriptsegment_changelist")).content.decode()
    assert flagged not in changelist


def test_it_lets_platform_staff_set_the_clinics_threshold(client_platform, rows_a):
    url = f"/admin/clinics/clinic/{rows_a.clinic.pk}/change/"
    assert 'name="low_confidence_threshold"' in client_platform.get(url).content.decode()
