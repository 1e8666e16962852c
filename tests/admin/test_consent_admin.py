"""Clinic admins see each session's consent in /admin/ (read-only, like the
rest of the session) and the audit rows of consent; platform staff set the
clinic's requirement."""

from clinics.access import Principal
from clinics.models import Role
from sessions.services import consent_record


def test_it_shows_a_sessions_consent_to_the_clinic_admin(client_admin_a, rows_a, rows_b, admin_a):
    principal = Principal(clinic=rows_a.clinic, role=Role.ADMIN, user=admin_a)
    consent_record(principal=principal, session=rows_a.session, method="written", note="form 7")
    html = client_admin_a.get(f"/admin/consultations/consultationsession/{rows_a.session.pk}/change/").content.decode()
    assert "Written" in html and "form 7" in html and f"user:{admin_a.pk}" in html
    audit = client_admin_a.get("/admin/clinics/auditevent/?q=" + str(rows_a.session.pk)).content.decode()
    assert "consent.record" in audit
    other = client_admin_a.get(f"/admin/consultations/consultationsession/{rows_b.session.pk}/change/")
    assert other.status_code in (302, 404)


def test_it_lets_platform_staff_set_the_clinics_requirement(client_platform, rows_a):
    html = client_platform.get(f"/admin/clinics/clinic/{rows_a.clinic.pk}/change/").content.decode()
    assert 'name="consent_required"' in html
