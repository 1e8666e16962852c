"""Tenant management (/api/v1/clinics/) is for platform staff, i.e.
superusers. Every clinic admin is ``is_staff`` (they sign in to /admin/,
scoped to their clinic), and that used to be enough to suspend another
clinic or change its quota (found in review)."""

import pytest
from rest_framework.test import APIClient

from clinics.models import AuditEvent, ClinicQuota

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_clinic_admin_b(user_b):
    """Clinic B's admin as the admin site makes them: is_staff, not superuser."""
    user_b.is_staff = True
    user_b.save(update_fields=["is_staff"])
    client = APIClient()
    client.force_login(user_b)
    return client


def test_it_refuses_another_clinics_suspension_and_limits_to_a_staff_clinic_admin(
    staff_clinic_admin_b, clinic_a, api_key_a_admin, api_client_for
):
    client = staff_clinic_admin_b
    assert client.get("/api/v1/clinics/").status_code == 403
    for method, path, body in [
        ("get", f"/api/v1/clinics/{clinic_a.pk}/", None),
        ("get", f"/api/v1/clinics/{clinic_a.pk}/quota/", None),
        ("post", f"/api/v1/clinics/{clinic_a.pk}/suspend/", None),
        ("patch", f"/api/v1/clinics/{clinic_a.pk}/quota/", {"max_concurrent_sessions": 0}),
        ("patch", f"/api/v1/clinics/{clinic_a.pk}/", {"retention_days": 1}),
    ]:
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code == 404, (method, path)
    assert client.post("/api/v1/clinics/", {"name": "X", "slug": "x"}, format="json").status_code == 403
    clinic_a.refresh_from_db()
    assert clinic_a.is_active and clinic_a.retention_days != 1
    assert ClinicQuota.objects.get(clinic=clinic_a).max_concurrent_sessions != 0
    assert api_client_for(api_key_a_admin).get("/api/v1/sessions/").status_code == 200
    assert not AuditEvent.objects.filter(
        clinic=clinic_a, action__in=["clinic.suspend", "clinic.update", "quota.update"]
    ).exists()


def test_it_keeps_tenant_management_for_superusers(clinic_a, django_user_model):
    operator = django_user_model.objects.create_superuser(username="op", password="pw")
    client = APIClient()
    client.force_login(operator)
    assert client.post(f"/api/v1/clinics/{clinic_a.pk}/suspend/").json()["is_active"] is False
    assert client.post(f"/api/v1/clinics/{clinic_a.pk}/reactivate/").json()["is_active"] is True
