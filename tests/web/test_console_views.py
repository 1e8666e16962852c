"""The console's server side: sign-in, clinic choice, tenant isolation,
list filters, detail with audit, erasure and the dashboard."""

from datetime import timedelta

import pytest
from django.utils import timezone

from clinics.models import AuditEvent
from sessions.models import ConsultationSession, TranscriptSegment
from tests.web.conftest import signed_in

pytestmark = pytest.mark.django_db


def _make(clinic, **fields) -> ConsultationSession:
    return ConsultationSession.objects.create(clinic=clinic, language="en-US", engine="fake", **fields)


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get("/sessions/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/sessions/")


def test_it_signs_in_with_username_and_password(client, clinician_a):
    response = client.post("/accounts/login/", {"username": clinician_a.username, "password": "pw-carl-clinician-a"})
    assert response.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    assert b'id="record-form"' in page.content


def test_it_refuses_a_wrong_password_without_signing_in(client, clinician_a):
    response = client.post("/accounts/login/", {"username": clinician_a.username, "password": "wrong"})
    assert response.status_code == 200
    assert client.get("/").status_code == 302


def test_it_renders_the_record_page_with_the_clinic_and_csrf_token(clinic_a, clinician_a):
    page = signed_in(clinician_a).get("/")
    html = page.content.decode()
    assert f'<meta name="clinic-id" content="{clinic_a.pk}">' in html
    assert '<meta name="csrf-token" content="' in html
    assert 'id="console-i18n"' in html
    assert "console/record.js" in html


def test_it_answers_404_for_another_clinics_session_on_every_page(session_a, user_b):
    client = signed_in(user_b)
    for path in ("/sessions/{}/", "/sessions/{}/live/", "/sessions/{}/delete/"):
        assert client.get(path.format(session_a.pk)).status_code == 404
    assert client.post(f"/sessions/{session_a.pk}/delete/").status_code == 404
    assert ConsultationSession.objects.filter(pk=session_a.pk).exists()
    assert b"chart-0042" not in client.get("/sessions/").content


def test_it_answers_404_for_an_unknown_session(clinician_a):
    assert signed_in(clinician_a).get("/sessions/00000000-0000-0000-0000-000000000001/").status_code == 404


def test_it_shows_the_transcript_and_audits_the_read(session_a, clinician_a):
    page = signed_in(clinician_a).get(f"/sessions/{session_a.pk}/")
    html = page.content.decode()
    assert "patient reports mild headache" in html
    assert '<span class="ts">00:02</span>' in html
    assert "01:05" in html  # the duration
    for fmt in ("txt", "vtt", "json"):
        assert f"/api/v1/sessions/{session_a.pk}/transcript/?format={fmt}" in html
    assert f"/api/v1/sessions/{session_a.pk}/audio/" in html
    event = AuditEvent.objects.get(action="transcript.read", object_id=str(session_a.pk))
    assert event.actor_user == clinician_a
    assert event.details == {"format": "console", "segments": 2}


def test_it_offers_delete_to_admins_only(session_a, clinician_a, admin_a):
    assert b"/delete/" not in signed_in(clinician_a).get(f"/sessions/{session_a.pk}/").content
    assert signed_in(clinician_a).get(f"/sessions/{session_a.pk}/delete/").status_code == 403
    assert b"/delete/" in signed_in(admin_a).get(f"/sessions/{session_a.pk}/").content


def test_it_erases_a_session_after_the_admin_confirms(session_a, admin_a, clinician_a):
    client = signed_in(admin_a)
    confirm = client.get(f"/sessions/{session_a.pk}/delete/")
    assert confirm.status_code == 200
    assert ConsultationSession.objects.filter(pk=session_a.pk).exists()  # GET only asks
    assert signed_in(clinician_a).post(f"/sessions/{session_a.pk}/delete/").status_code == 403
    response = client.post(f"/sessions/{session_a.pk}/delete/")
    assert response.status_code == 302
    assert not ConsultationSession.objects.filter(pk=session_a.pk).exists()
    assert not TranscriptSegment.objects.filter(session_id=session_a.pk).exists()
    assert AuditEvent.objects.filter(action="session.erase", object_id=str(session_a.pk)).exists()


def test_it_refuses_to_erase_a_live_session_and_changes_nothing(clinic_a, admin_a):
    live = _make(clinic_a, status="live")
    response = signed_in(admin_a).post(f"/sessions/{live.pk}/delete/")
    assert response.status_code == 409
    assert b"Stop the recording first" in response.content
    assert ConsultationSession.objects.filter(pk=live.pk, status="live").exists()


def test_it_filters_the_list_by_status_date_and_external_ref(clinic_a, clinic_b, clinician_a):
    old = _make(clinic_a, external_ref="ref-old", status="ended")
    ConsultationSession.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    _make(clinic_a, external_ref="ref-live", status="live")
    _make(clinic_a, external_ref="ref-ended", status="ended")
    _make(clinic_b, external_ref="ref-b", status="ended")
    client = signed_in(clinician_a)

    def refs(query: str) -> set[str]:
        html = client.get(f"/sessions/?{query}").content.decode()
        return {r for r in ("ref-old", "ref-live", "ref-ended", "ref-b") if r in html}

    assert refs("") == {"ref-old", "ref-live", "ref-ended"}
    assert refs("status=live") == {"ref-live"}
    assert refs("external_ref=ref-ended") == {"ref-ended"}
    today = timezone.localdate().isoformat()
    assert refs(f"date_from={today}") == {"ref-live", "ref-ended"}
    assert refs(f"date_to={(timezone.localdate() - timedelta(days=5)).isoformat()}") == {"ref-old"}


def test_it_answers_bad_filters_with_a_message_not_a_500(clinician_a):
    client = signed_in(clinician_a)
    response = client.get("/sessions/?date_from=yesterday&status=bogus&page=zzz")
    assert response.status_code == 200
    assert b'role="alert"' in response.content
    reversed_range = client.get("/sessions/?date_from=2026-02-02&date_to=2026-01-01")
    assert reversed_range.status_code == 200
    assert b'role="alert"' in reversed_range.content


def test_it_makes_a_user_of_two_clinics_choose_and_remembers_the_choice(two_clinic_user, clinic_c, session_a):
    client = signed_in(two_clinic_user)
    response = client.get("/sessions/")
    assert response.status_code == 302
    assert response["Location"].startswith("/clinic/?next=")
    picked = client.post("/clinic/", {"clinic": str(clinic_c.pk), "next": "/sessions/"})
    assert picked.status_code == 302
    assert picked["Location"] == "/sessions/"
    assert client.session["clinic_id"] == str(clinic_c.pk)
    # Clinic C sees none of clinic A's consultations.
    assert b"chart-0042" not in client.get("/sessions/").content
    assert client.get(f"/sessions/{session_a.pk}/").status_code == 404
    # Admin in C: the dashboard opens.
    assert client.get("/dashboard/").status_code == 200


def test_it_refuses_a_clinic_the_user_does_not_belong_to(two_clinic_user, clinic_b):
    client = signed_in(two_clinic_user)
    response = client.post("/clinic/", {"clinic": str(clinic_b.pk), "next": "/"})
    assert response.status_code == 200
    assert "clinic_id" not in client.session


def test_it_ignores_an_offsite_next_after_choosing(two_clinic_user, clinic_c):
    response = signed_in(two_clinic_user).post("/clinic/", {"clinic": str(clinic_c.pk), "next": "https://evil.test/"})
    assert response["Location"] == "/"


def test_it_shows_the_dashboard_with_usage_bars_to_admins_only(clinic_a, admin_a, clinician_a, hold_stream_slot):
    clinic_a.quota.max_concurrent_sessions = 4
    clinic_a.quota.save()
    hold_stream_slot(clinic_a, _make(clinic_a, status="live", external_ref="now-live").pk)
    _make(clinic_a, status="ended", audio_duration_ms=30 * 60_000, audio_bytes=10 * 1024**2)
    assert signed_in(clinician_a).get("/dashboard/").status_code == 403
    html = signed_in(admin_a).get("/dashboard/").content.decode()
    assert "now-live" in html
    assert 'aria-valuenow="25"' in html  # 1 of 4 concurrent sessions
    assert "30.0 / 12000" in html  # minutes used / allowed
    assert "10.0" in html and "MB" in html


def test_it_tells_a_user_without_clinic_that_they_have_none(django_user_model):
    loner = django_user_model.objects.create_user(username="loner", password="pw-loner")
    response = signed_in(loner).get("/")
    assert response.status_code == 403
    assert b"not a member of any clinic" in response.content


def test_it_logs_out_on_post(clinician_a):
    client = signed_in(clinician_a)
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_it_shows_an_ended_consultation_on_the_live_page_without_following(session_a, clinician_a):
    html = signed_in(clinician_a).get(f"/sessions/{session_a.pk}/live/").content.decode()
    assert 'data-follow="false"' in html
    assert "no fever" in html
    assert AuditEvent.objects.filter(action="transcript.read", details__format="console-live").count() == 1


def test_it_follows_an_open_consultation_over_the_live_socket(clinic_a, clinician_a):
    live = _make(clinic_a, status="live")
    html = signed_in(clinician_a).get(f"/sessions/{live.pk}/live/").content.decode()
    assert 'data-follow="true"' in html
    assert f'data-live-url="/ws/v1/sessions/{live.pk}/live"' in html
    assert not AuditEvent.objects.filter(action="transcript.read").exists()  # the socket audits the live view


@pytest.mark.parametrize(
    "query", ["date_from=0001-01-01", "date_to=9999-12-31", "date_from=0001-01-01&date_to=0001-01-02"]
)
def test_it_refuses_dates_out_of_range_without_a_500_in_any_time_zone(clinician_a, settings, query):
    settings.TIME_ZONE = "Asia/Tokyo"
    response = signed_in(clinician_a).get(f"/sessions/?{query}")
    assert response.status_code == 200
    assert b'role="alert"' in response.content


def test_it_says_so_and_deletes_nothing_when_storage_is_down(session_a, admin_a, monkeypatch):
    def storage_down(prefix: str) -> int:
        raise OSError("storage unreachable")

    monkeypatch.setattr("sessions.services.storage_delete_prefix", storage_down)
    response = signed_in(admin_a).post(f"/sessions/{session_a.pk}/delete/")
    assert response.status_code == 503
    assert b"nothing was deleted" in response.content
    assert ConsultationSession.objects.filter(pk=session_a.pk).exists()
    assert TranscriptSegment.objects.filter(session=session_a).count() == 2
