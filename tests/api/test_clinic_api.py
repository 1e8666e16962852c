import logging

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from clinics.models import ApiKey, AuditEvent, Clinic, ClinicQuota, Membership
from clinics.services import clinic_suspend
from tests.api.conftest import error_code


@pytest.fixture
def staff_client(db):
    staff = get_user_model().objects.create_superuser(username="olga-operator", password="pw")
    client = APIClient()
    client.force_login(staff)
    return client


def session_client(user, **headers) -> APIClient:
    client = APIClient(**headers)
    client.force_login(user)
    return client


# --- the caller's clinic -----------------------------------------------------


def test_it_shows_the_clinic_with_quota_and_usage(client_a, clinic_a, session_a, hold_stream_slot):
    hold_stream_slot(clinic_a, session_a.pk)  # what the concurrent-stream quota counts
    session_a.status = "live"
    session_a.audio_duration_ms = 90_000
    session_a.audio_bytes = 2_880_000
    session_a.save()
    body = client_a.get("/api/v1/clinic/").json()
    assert body["id"] == str(clinic_a.id) and body["role"] == "clinician"
    assert body["quota"]["max_concurrent_sessions"] == {"limit": 20, "used": 1}
    assert body["quota"]["audio_minutes_per_month"]["used"] == 1.5
    assert body["quota"]["storage_bytes"]["used"] == 2_880_000


def test_it_lets_a_clinic_admin_rename_the_clinic_with_an_audit_row(client_a_admin, clinic_a):
    response = client_a_admin.patch(
        "/api/v1/clinic/", {"name": "Clinic A East", "default_language": "ja-JP"}, format="json"
    )
    assert response.status_code == 200, response.content
    clinic_a.refresh_from_db()
    assert (clinic_a.name, clinic_a.default_language) == ("Clinic A East", "ja-JP")
    event = AuditEvent.objects.get(clinic=clinic_a, action="clinic.update")
    assert event.details == {"fields": ["default_language", "name"]}


def test_it_refuses_clinic_changes_by_clinicians(client_a, clinic_a):
    response = client_a.patch("/api/v1/clinic/", {"name": "Mine now"}, format="json")
    assert response.status_code == 403 and error_code(response) == "admin_required"
    clinic_a.refresh_from_db()
    assert clinic_a.name == "Clinic A"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"quota": {"max_concurrent_sessions": 1000}}, "read_only_field"),
        ({"is_active": True}, "read_only_field"),
        ({"slug": "new"}, "read_only_field"),
        ({"max_concurrent_sessions": 1000}, "unknown_field"),
        ({"name": 7}, "invalid"),
        ({"default_language": "de-DE"}, "invalid"),
    ],
)
def test_it_keeps_the_quota_and_other_fields_read_only_for_clinic_admins(client_a_admin, clinic_a, body, code):
    response = client_a_admin.patch("/api/v1/clinic/", body, format="json")
    assert response.status_code == 400 and error_code(response) == code
    assert ClinicQuota.objects.get(clinic=clinic_a).max_concurrent_sessions == 20
    assert not AuditEvent.objects.filter(action="clinic.update").exists()


# --- members ---------------------------------------------------------------------


def test_it_manages_members_for_admins(client_a_admin, clinic_a, admin_a):
    listing = client_a_admin.get("/api/v1/clinic/members/").json()
    assert [m["username"] for m in listing["results"]] == ["alice-admin-a"]
    # A user of no clinic: users of other clinics can't be enrolled (test_member_enrolment.py).
    user_b = get_user_model().objects.create_user(username="bob-free", password="pw", email="bob@free.test")
    added = client_a_admin.post(
        "/api/v1/clinic/members/",
        {"username": "bob-free", "email": "bob@free.test", "role": "clinician"},
        format="json",
    )
    assert added.status_code == 201, added.content
    member_id = added.json()["id"]
    assert Membership.objects.filter(clinic=clinic_a, user=user_b, role="clinician").exists()
    promoted = client_a_admin.patch(f"/api/v1/clinic/members/{member_id}/", {"role": "admin"}, format="json")
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    assert client_a_admin.delete(f"/api/v1/clinic/members/{member_id}/").status_code == 204
    assert not Membership.objects.filter(clinic=clinic_a, user=user_b).exists()
    actions = list(AuditEvent.objects.filter(clinic=clinic_a).values_list("action", flat=True))
    assert {"member.add", "member.update", "member.remove"} <= set(actions)
    unknown = client_a_admin.post("/api/v1/clinic/members/", {"username": "nobody", "role": "admin"}, format="json")
    assert unknown.status_code == 404 and error_code(unknown) == "user_not_found"


def test_it_refuses_member_management_to_clinicians(client_a, membership_clinician_a):
    assert client_a.get("/api/v1/clinic/members/").status_code == 403
    path = f"/api/v1/clinic/members/{membership_clinician_a.id}/"
    response = client_a.patch(path, {"role": "admin"}, format="json")
    assert response.status_code == 403 and error_code(response) == "admin_required"
    assert (
        client_a.post("/api/v1/clinic/members/", {"username": "x", "role": "admin"}, format="json").status_code == 403
    )
    membership_clinician_a.refresh_from_db()
    assert membership_clinician_a.role == "clinician"


def test_it_keeps_the_last_admin(client_a_admin, admin_a):
    membership = Membership.objects.get(user=admin_a)
    response = client_a_admin.delete(f"/api/v1/clinic/members/{membership.id}/")
    assert response.status_code == 409 and error_code(response) == "last_admin"


# --- API keys -----------------------------------------------------------------------


def test_it_shows_a_new_raw_key_once_and_stores_only_its_hash(client_a_admin, clinic_a, caplog):
    caplog.set_level(logging.DEBUG)
    response = client_a_admin.post("/api/v1/clinic/api-keys/", {"name": "EHR", "role": "clinician"}, format="json")
    assert response.status_code == 201, response.content
    raw = response.json()["key"]
    assert raw.startswith("vai_" + response.json()["prefix"] + "_")
    # The new key works, and is never shown again.
    fresh = APIClient()
    fresh.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert fresh.get("/api/v1/sessions/").status_code == 200
    listing = client_a_admin.get("/api/v1/clinic/api-keys/").content.decode()
    detail = client_a_admin.get(f"/api/v1/clinic/api-keys/{response.json()['id']}/").content.decode()
    secret = raw.split("_", 2)[2]
    assert secret not in listing and secret not in detail
    # Not in any column of any table, nor in any log line.
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        assert ApiKey._meta.db_table in tables and AuditEvent._meta.db_table in tables
        for table in tables:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            dump = repr(cursor.fetchall())
            assert secret not in dump and raw not in dump, table
    assert secret not in caplog.text


def test_it_revokes_a_key(client_a_admin, api_client_for, api_key_a_clinician):
    key = ApiKey.objects.get(prefix=api_key_a_clinician.split("_")[1])
    assert client_a_admin.delete(f"/api/v1/clinic/api-keys/{key.id}/").status_code == 204
    response = api_client_for(api_key_a_clinician).get("/api/v1/sessions/")
    assert response.status_code == 401 and error_code(response) == "authentication_failed"
    assert AuditEvent.objects.filter(action="api_key.revoke", object_id=str(key.id)).exists()


def test_it_refuses_key_management_to_clinicians(client_a, key_a):
    assert client_a.get("/api/v1/clinic/api-keys/").status_code == 403
    response = client_a.post("/api/v1/clinic/api-keys/", {"name": "x", "role": "admin"}, format="json")
    assert response.status_code == 403 and error_code(response) == "admin_required"
    assert client_a.delete(f"/api/v1/clinic/api-keys/{key_a.id}/").status_code == 403
    key_a.refresh_from_db()
    assert key_a.revoked_at is None
    assert ApiKey.objects.count() == 2


@pytest.mark.parametrize(
    ("method", "path_template"),
    [
        ("get", "/api/v1/clinic/members/{member}/"),
        ("patch", "/api/v1/clinic/members/{member}/"),
        ("delete", "/api/v1/clinic/members/{member}/"),
        ("get", "/api/v1/clinic/api-keys/{key}/"),
        ("delete", "/api/v1/clinic/api-keys/{key}/"),
    ],
)
def test_it_answers_404_to_another_clinics_admin(client_b, key_a, membership_clinician_a, method, path_template):
    path = path_template.format(member=membership_clinician_a.id, key=key_a.id)
    response = getattr(client_b, method)(path, {"role": "admin"}, format="json")
    assert response.status_code == 404 and error_code(response) == "not_found"
    key_a.refresh_from_db()
    membership_clinician_a.refresh_from_db()
    assert key_a.revoked_at is None and membership_clinician_a.role == "clinician"


def test_it_lists_only_the_callers_keys_and_members(client_b, clinic_b, user_b, admin_a):
    keys = client_b.get("/api/v1/clinic/api-keys/").json()["results"]
    assert {k["name"] for k in keys} == {"b-admin"}
    members = client_b.get("/api/v1/clinic/members/").json()["results"]
    assert [m["username"] for m in members] == ["bob-b"]


# --- platform staff ------------------------------------------------------------------


def test_it_lets_platform_staff_create_suspend_reactivate_and_set_limits(staff_client, api_client_for):
    created = staff_client.post("/api/v1/clinics/", {"name": "Clinic C", "slug": "clinic-c"}, format="json")
    assert created.status_code == 201, created.content
    clinic_id = created.json()["id"]
    assert created.json()["default_language"] == "ja-JP"
    assert (
        staff_client.post("/api/v1/clinics/", {"name": "Again", "slug": "clinic-c"}, format="json").status_code == 409
    )
    quota = staff_client.patch(f"/api/v1/clinics/{clinic_id}/quota/", {"max_concurrent_sessions": 3}, format="json")
    assert quota.status_code == 200 and quota.json()["max_concurrent_sessions"] == {"limit": 3, "used": 0}
    bad = staff_client.patch(f"/api/v1/clinics/{clinic_id}/quota/", {"storage_bytes": -1}, format="json")
    assert bad.status_code == 400
    assert staff_client.post(f"/api/v1/clinics/{clinic_id}/suspend/").json()["is_active"] is False
    assert staff_client.post(f"/api/v1/clinics/{clinic_id}/reactivate/").json()["is_active"] is True
    patched = staff_client.patch(f"/api/v1/clinics/{clinic_id}/", {"retention_days": 30}, format="json")
    assert patched.status_code == 200 and patched.json()["retention_days"] == 30
    listing = staff_client.get("/api/v1/clinics/").json()
    assert [c["slug"] for c in listing["results"]] == ["clinic-c"]
    clinic = Clinic.objects.get(pk=clinic_id)
    actions = set(AuditEvent.objects.filter(clinic=clinic).values_list("action", flat=True))
    assert {"clinic.create", "quota.update", "clinic.suspend", "clinic.reactivate", "clinic.update"} <= actions
    event = AuditEvent.objects.get(clinic=clinic, action="quota.update")
    assert event.actor_label.startswith("staff:") and event.actor_user is not None


def test_it_refuses_tenant_management_to_clinic_admins_and_keys(client_a_admin, admin_a, clinic_a):
    user_client = session_client(admin_a)
    for client in (client_a_admin, user_client):
        response = client.get("/api/v1/clinics/")
        assert response.status_code == 403 and error_code(response) == "staff_required"
        response = client.patch(
            f"/api/v1/clinics/{clinic_a.id}/quota/", {"max_concurrent_sessions": 999}, format="json"
        )
        assert response.status_code == 404
        assert client.post(f"/api/v1/clinics/{clinic_a.id}/suspend/").status_code == 404
    assert ClinicQuota.objects.get(clinic=clinic_a).max_concurrent_sessions == 20
    clinic_a.refresh_from_db()
    assert clinic_a.is_active


def test_it_answers_401_without_credentials(api_client, clinic_a):
    for path in ("/api/v1/sessions/", "/api/v1/clinic/", "/api/v1/clinics/"):
        response = api_client.get(path)
        assert response.status_code == 401 and error_code(response) == "not_authenticated"
        assert response["WWW-Authenticate"] == "Api-Key"


# --- suspended clinics and browser sessions ------------------------------------------


def test_it_answers_403_to_a_suspended_clinics_keys_and_users(client_a, clinician_a, clinic_a):
    clinic_suspend(clinic=clinic_a)
    for client in (client_a, session_client(clinician_a)):
        response = client.get("/api/v1/sessions/")
        assert response.status_code == 403
        assert error_code(response) == "clinic_suspended"
        assert "suspended" in response.json()["error"]["message"]


def test_it_picks_the_clinic_of_a_user_in_several_clinics(clinician_a, clinic_a, clinic_b):
    Membership.objects.create(clinic=clinic_b, user=clinician_a, role="admin")
    client = session_client(clinician_a)
    assert client.get("/api/v1/clinic/", HTTP_X_CLINIC_ID=str(clinic_b.id)).json()["id"] == str(clinic_b.id)
    assert client.get("/api/v1/clinic/", HTTP_X_CLINIC_ID=str(clinic_a.id)).json()["role"] == "clinician"
    session = client.session
    session["clinic_id"] = str(clinic_b.id)
    session.save()
    assert client.get("/api/v1/clinic/").json()["id"] == str(clinic_b.id)


def test_it_hides_clinics_the_user_does_not_belong_to(clinician_a, clinic_b):
    response = session_client(clinician_a).get("/api/v1/clinic/", HTTP_X_CLINIC_ID=str(clinic_b.id))
    assert response.status_code == 404


def test_it_refuses_a_clinic_header_that_does_not_match_the_key(client_b, clinic_a):
    response = client_b.get("/api/v1/clinic/", HTTP_X_CLINIC_ID=str(clinic_a.id))
    assert response.status_code == 404


def test_it_requires_csrf_for_browser_sessions(clinician_a):
    client = session_client(clinician_a, enforce_csrf_checks=True)
    response = client.post("/api/v1/sessions/", {}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]


def test_it_falls_back_when_the_remembered_clinic_is_no_longer_the_users(clinician_a, clinic_a, clinic_b):
    client = session_client(clinician_a)
    session = client.session
    session["clinic_id"] = str(clinic_b.id)
    session.save()
    assert client.get("/api/v1/clinic/").json()["id"] == str(clinic_a.id)
    # An explicit header is not second-guessed.
    assert client.get("/api/v1/clinic/", HTTP_X_CLINIC_ID=str(clinic_b.id)).status_code == 404


def test_it_accepts_the_keys_own_clinic_in_any_uuid_spelling(client_a, clinic_a):
    response = client_a.get("/api/v1/clinic/", HTTP_X_CLINIC_ID=str(clinic_a.id).upper())
    assert response.status_code == 200


def test_it_lets_a_clinic_admin_set_the_clinic_time_zone(client_a_admin, clinic_a):
    response = client_a_admin.patch("/api/v1/clinic/", {"time_zone": "America/New_York"}, format="json")
    assert response.status_code == 200 and response.json()["time_zone"] == "America/New_York"
    clinic_a.refresh_from_db()
    assert clinic_a.time_zone == "America/New_York"


def test_it_rejects_an_unknown_time_zone_and_changes_nothing(client_a_admin, clinic_a):
    response = client_a_admin.patch("/api/v1/clinic/", {"time_zone": "Mars/Olympus_Mons"}, format="json")
    assert response.status_code == 400 and error_code(response) == "invalid"
    clinic_a.refresh_from_db()
    assert clinic_a.time_zone == "Asia/Tokyo"
