from datetime import UTC, datetime

from sessions.models import ConsultationSession
from tests.web.conftest import signed_in


def test_it_shows_session_times_in_the_clinics_time_zone(clinic_a, clinician_a, session_a):
    ConsultationSession.objects.filter(pk=session_a.pk).update(created_at=datetime(2026, 11, 28, 0, 30, tzinfo=UTC))
    page = signed_in(clinician_a).get(f"/sessions/{session_a.pk}/").content.decode()
    assert "2026-11-28 09:30:00" in page  # Asia/Tokyo, the default

    clinic_a.time_zone = "America/New_York"
    clinic_a.save()
    page = signed_in(clinician_a).get(f"/sessions/{session_a.pk}/").content.decode()
    assert "2026-11-27 19:30:00" in page


def test_it_labels_every_console_time_with_its_zone(clinic_a, clinician_a, session_a):
    ConsultationSession.objects.filter(pk=session_a.pk).update(created_at=datetime(2026, 11, 28, 0, 30, tzinfo=UTC))
    client = signed_in(clinician_a)
    detail = client.get(f"/sessions/{session_a.pk}/").content.decode()
    assert "2026-11-28 09:30:00 JST" in detail
    assert "Times in Asia/Tokyo" in detail
    listing = client.get("/sessions/").content.decode()
    assert "2026-11-28 09:30 JST" in listing
    assert "Times in Asia/Tokyo" in client.get("/").content.decode()
