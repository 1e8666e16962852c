"""A clinic admin sees only their own clinic in /admin/; another clinic's
objects answer exactly like missing ones. Platform staff see everything."""

import uuid

import pytest
from django.urls import reverse

from clinics.models import AuditEvent, Role

# (admin url prefix, attribute of ClinicRows holding that admin's object)
ADMINS = [
    ("clinics_clinic", "clinic"),
    ("clinics_clinicquota", "clinic"),
    ("clinics_membership", "membership"),
    ("clinics_apikey", "api_key"),
    ("clinics_auditevent", "audit_event"),
    ("consultations_consultationsession", "session"),
    ("consultations_transcriptsegment", "segment"),
]


def _pk(prefix: str, rows) -> object:
    obj = getattr(rows, dict(ADMINS)[prefix])
    # The quota row's primary key is its clinic's id.
    return obj.pk


def _changelist_pks(client, prefix: str) -> set[str]:
    response = client.get(reverse(f"admin:{prefix}_changelist"))
    assert response.status_code == 200, prefix
    return {str(obj.pk) for obj in response.context["cl"].result_list}


@pytest.mark.parametrize("prefix", [p for p, _ in ADMINS])
def test_it_lists_only_the_clinic_admins_own_rows(client_admin_a, rows_a, rows_b, prefix):
    pks = _changelist_pks(client_admin_a, prefix)
    assert str(_pk(prefix, rows_a)) in pks
    assert str(_pk(prefix, rows_b)) not in pks


@pytest.mark.parametrize("prefix", [p for p, _ in ADMINS])
def test_it_lists_every_clinic_to_platform_staff(client_platform, rows_a, rows_b, prefix):
    pks = _changelist_pks(client_platform, prefix)
    assert {str(_pk(prefix, rows_a)), str(_pk(prefix, rows_b))} <= pks


@pytest.mark.parametrize("view", ["change", "history", "delete"])
@pytest.mark.parametrize("prefix", [p for p, _ in ADMINS])
def test_it_answers_another_clinics_object_like_a_missing_one(client_admin_a, rows_a, rows_b, prefix, view):
    other = client_admin_a.get(reverse(f"admin:{prefix}_{view}", args=[_pk(prefix, rows_b)]))
    missing_id = uuid.uuid4() if isinstance(_pk(prefix, rows_b), uuid.UUID) else 987654321
    missing = client_admin_a.get(reverse(f"admin:{prefix}_{view}", args=[missing_id]))
    assert other.status_code == missing.status_code
    assert other.status_code in (302, 403, 404)
    assert other.get("Location") == missing.get("Location")
    assert rows_b.clinic.name not in other.content.decode()
    # ...while the clinic admin's own object does open (or is refused for a
    # reason that does not depend on the object, e.g. no delete on audit rows).
    own = client_admin_a.get(reverse(f"admin:{prefix}_{view}", args=[_pk(prefix, rows_a)]))
    assert own.status_code in (200, 403)


def test_it_refuses_another_clinics_object_on_post_too(client_admin_a, rows_a, rows_b):
    url = reverse("admin:clinics_membership_change", args=[rows_b.membership.pk])
    response = client_admin_a.post(url, {"role": Role.CLINICIAN})
    assert response.status_code == 302
    rows_b.membership.refresh_from_db()
    assert rows_b.membership.role == Role.ADMIN


def test_it_offers_only_the_own_clinic_in_foreign_key_choices(client_admin_a, rows_a, rows_b):
    for prefix in ("clinics_apikey", "clinics_membership"):
        response = client_admin_a.get(reverse(f"admin:{prefix}_add"))
        assert response.status_code == 200
        choices = list(response.context["adminform"].form.fields["clinic"].queryset)
        assert choices == [rows_a.clinic], prefix
        # A clinic admin who runs one clinic starts there.
        assert response.context["adminform"].form.initial["clinic"] == rows_a.clinic.pk, prefix


def test_it_rejects_a_posted_foreign_key_of_another_clinic(client_admin_a, rows_a, rows_b):
    before = rows_b.clinic.api_keys.count()
    response = client_admin_a.post(
        reverse("admin:clinics_apikey_add"), {"clinic": str(rows_b.clinic.pk), "name": "sneaky", "role": "admin"}
    )
    assert response.status_code == 200  # the form again, with an error
    assert "clinic" in response.context["adminform"].form.errors
    assert rows_b.clinic.api_keys.count() == before


def test_it_scopes_autocomplete_to_the_own_clinic(client_admin_a, rows_a, rows_b):
    params = {"app_label": "clinics", "model_name": "apikey", "field_name": "clinic", "term": "Clinic"}
    response = client_admin_a.get(reverse("admin:autocomplete"), params)
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [str(rows_a.clinic.pk)]


def test_it_gives_platform_staff_every_clinic_in_autocomplete(client_platform, rows_a, rows_b):
    params = {"app_label": "clinics", "model_name": "apikey", "field_name": "clinic", "term": "Clinic"}
    ids = {r["id"] for r in client_platform.get(reverse("admin:autocomplete"), params).json()["results"]}
    assert ids == {str(rows_a.clinic.pk), str(rows_b.clinic.pk)}


def test_it_refuses_user_autocomplete_to_clinic_admins(client_admin_a, rows_a, rows_b):
    params = {"app_label": "clinics", "model_name": "membership", "field_name": "user", "term": "b"}
    response = client_admin_a.get(reverse("admin:autocomplete"), params)
    assert response.status_code == 403


def test_it_keeps_the_platform_user_table_from_clinic_admins(client_admin_a, rows_a):
    assert client_admin_a.get(reverse("admin:auth_user_changelist")).status_code == 403
    index = client_admin_a.get(reverse("admin:index")).content.decode()
    assert "/admin/auth/user/" not in index
    assert "/admin/clinics/membership/" in index


def test_it_shows_the_quota_read_only_to_clinic_admins(client_admin_a, rows_a):
    url = reverse("admin:clinics_clinicquota_change", args=[rows_a.clinic.pk])
    response = client_admin_a.get(url)
    assert response.status_code == 200
    assert 'name="max_concurrent_sessions"' not in response.content.decode()
    assert "/ 20" in response.content.decode()  # usage next to the limit
    posted = client_admin_a.post(url, {"max_concurrent_sessions": 999})
    assert posted.status_code == 403
    rows_a.clinic.quota.refresh_from_db()
    assert rows_a.clinic.quota.max_concurrent_sessions == 20


def test_it_lets_platform_staff_change_a_quota_with_an_audit_row(client_platform, rows_a):
    url = reverse("admin:clinics_clinicquota_change", args=[rows_a.clinic.pk])
    quota = rows_a.clinic.quota
    data = {
        "max_concurrent_sessions": 7,
        "max_session_seconds": quota.max_session_seconds,
        "audio_minutes_per_month": quota.audio_minutes_per_month,
        "storage_bytes": quota.storage_bytes,
    }
    assert client_platform.post(url, data).status_code == 302
    quota.refresh_from_db()
    assert quota.max_concurrent_sessions == 7
    event = AuditEvent.objects.get(clinic=rows_a.clinic, action="quota.update")
    assert event.details["after"] == {"max_concurrent_sessions": 7}


def test_it_shows_clinic_admins_their_clinic_read_only(client_admin_a, rows_a):
    url = reverse("admin:clinics_clinic_change", args=[rows_a.clinic.pk])
    response = client_admin_a.get(url)
    assert response.status_code == 200
    assert 'name="name"' not in response.content.decode()
    assert client_admin_a.post(url, {"name": "Renamed"}).status_code == 403
    assert client_admin_a.get(reverse("admin:clinics_clinic_add")).status_code == 403


def test_it_shows_nothing_to_staff_who_administer_no_clinic(client, clinician_a, rows_a):
    clinician_a.is_staff = True
    clinician_a.save()
    client.force_login(clinician_a)
    for prefix, _ in ADMINS:
        assert client.get(reverse(f"admin:{prefix}_changelist")).status_code == 403, prefix


def test_it_shuts_out_admins_of_a_suspended_clinic(client_admin_a, rows_a):
    rows_a.clinic.is_active = False
    rows_a.clinic.save()
    assert client_admin_a.get(reverse("admin:consultations_consultationsession_changelist")).status_code == 403


def test_it_shows_an_admin_of_two_clinics_both_and_no_third(client_admin_a, staff_admin_a, rows_a, rows_b, db):
    from clinics.models import Clinic, Membership
    from clinics.services import clinic_create

    Membership.objects.create(clinic=rows_b.clinic, user=staff_admin_a, role=Role.ADMIN)
    third = clinic_create(name="Clinic C", slug="clinic-c")
    pks = _changelist_pks(client_admin_a, "clinics_clinic")
    assert pks == {str(rows_a.clinic.pk), str(rows_b.clinic.pk)}
    assert str(third.pk) not in pks and Clinic.objects.count() == 3


def test_it_keeps_the_admin_modules_on_the_access_layer():
    from pathlib import Path

    from tests.api.test_view_access_rule import direct_queries

    root = Path(__file__).resolve().parents[2]
    for module in ("clinics/admin.py", "clinics/admin_scoping.py", "sessions/admin.py"):
        assert direct_queries((root / module).read_text()) == [], module
