"""Django admin reads times in the same zone as the console for a clinic
admin (their clinic's), and says which zone it uses."""

from datetime import UTC, datetime

from sessions.models import ConsultationSession


def _started_at_half_past_midnight_utc(session: ConsultationSession) -> None:
    ConsultationSession.objects.filter(pk=session.pk).update(created_at=datetime(2026, 11, 28, 0, 30, tzinfo=UTC))


def test_it_shows_a_clinic_admin_the_clinics_zone_labelled(client_admin_a, rows_a):
    _started_at_half_past_midnight_utc(rows_a.session)
    page = client_admin_a.get(f"/admin/consultations/consultationsession/{rows_a.session.pk}/change/").content.decode()
    assert "Times are in Asia/Tokyo" in page
    assert "9:30 a.m." in page and "12:30 a.m." not in page


def test_it_shows_platform_staff_the_servers_zone_labelled(client_platform, rows_a, settings):
    _started_at_half_past_midnight_utc(rows_a.session)
    page = client_platform.get(f"/admin/consultations/consultationsession/{rows_a.session.pk}/change/").content.decode()
    assert f"Times are in {settings.TIME_ZONE}" in page
    assert "12:30 a.m." in page
