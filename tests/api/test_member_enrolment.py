"""Who a clinic admin may enrol: only users of no other clinic. A user of
another clinic answers exactly like a missing username (no oracle)."""

from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from clinics.models import AuditEvent, Membership, Role
from clinics.services import PlatformActor, membership_add
from tests.api.conftest import error_code

MEMBERS = "/api/v1/clinic/members/"


def _body_without_request_id(response) -> dict:
    body = response.json()
    body.get("error", {}).pop("request_id", None)
    body.pop("request_id", None)
    return body


def test_it_answers_a_user_of_another_clinic_like_a_missing_user(client_a_admin, clinic_a, user_b):
    user_b.email = "bob@clinic-b.test"
    user_b.save(update_fields=["email"])
    theirs = client_a_admin.post(MEMBERS, {"username": "bob-b", "role": "clinician"}, format="json")
    missing = client_a_admin.post(MEMBERS, {"username": "no-such-user", "role": "clinician"}, format="json")
    assert theirs.status_code == missing.status_code == 404
    assert error_code(theirs) == "user_not_found"
    assert _body_without_request_id(theirs) == _body_without_request_id(missing)
    assert b"bob@clinic-b.test" not in theirs.content
    assert not Membership.objects.filter(clinic=clinic_a, user=user_b).exists()
    assert not AuditEvent.objects.filter(clinic=clinic_a, action="member.add").exists()


def test_it_refuses_an_api_key_enrolling_a_user_of_another_clinic(api_client_for, api_key_a_admin, clinic_a, user_b):
    response = api_client_for(api_key_a_admin).post(MEMBERS, {"username": "bob-b", "role": "admin"}, format="json")
    assert response.status_code == 404 and error_code(response) == "user_not_found"
    assert not Membership.objects.filter(clinic=clinic_a, user=user_b).exists()


def test_it_lets_a_clinic_admin_enrol_a_user_of_no_clinic(client_a_admin, clinic_a, user_b):
    free = get_user_model().objects.create_user(username="dana-free", password="pw", email="dana@example.test")
    response = client_a_admin.post(
        MEMBERS, {"username": "dana-free", "email": "Dana@Example.test", "role": "clinician"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert Membership.objects.filter(clinic=clinic_a, user=free, role="clinician").exists()


def test_it_lets_platform_staff_enrol_a_user_of_another_clinic(clinic_a, clinic_b, user_b):
    staff = get_user_model().objects.create_superuser(username="olga-operator", password="pw")
    Membership.objects.create(clinic=clinic_a, user=staff, role=Role.ADMIN)
    client = APIClient()
    client.force_login(staff)
    response = client.post(MEMBERS, {"username": "bob-b", "role": "clinician"}, format="json")
    assert response.status_code == 201, response.content
    # and in Django admin, where staff act as a PlatformActor
    carl = get_user_model().objects.create_user(username="carl-c", password="pw")
    Membership.objects.create(clinic=clinic_b, user=carl, role=Role.CLINICIAN)
    membership_add(clinic=clinic_a, user=carl, role=Role.CLINICIAN, actor=PlatformActor(user=staff))
    assert set(Membership.objects.filter(clinic=clinic_a).values_list("user__username", flat=True)) == {
        "olga-operator",
        "bob-b",
        "carl-c",
    }


def test_it_answers_a_free_user_without_the_right_email_like_a_missing_user(client_a_admin, clinic_a):
    get_user_model().objects.create_user(username="erin-free", password="pw", email="erin@example.test")
    get_user_model().objects.create_user(username="no-mail-free", password="pw")
    missing = client_a_admin.post(MEMBERS, {"username": "nobody-at-all", "role": "clinician"}, format="json")
    for body in [
        {"username": "erin-free", "role": "clinician"},
        {"username": "erin-free", "email": "guess@example.test", "role": "clinician"},
        {"username": "no-mail-free", "email": "", "role": "clinician"},
    ]:
        response = client_a_admin.post(MEMBERS, body, format="json")
        assert response.status_code == 404, body
        assert _body_without_request_id(response) == _body_without_request_id(missing)
    assert not Membership.objects.filter(clinic=clinic_a, user__username__in=["erin-free", "no-mail-free"]).exists()


def test_it_never_lets_a_clinic_admin_enrol_platform_staff(client_a_admin, clinic_a):
    get_user_model().objects.create_superuser(username="root-op", password="pw", email="root@example.test")
    response = client_a_admin.post(
        MEMBERS, {"username": "root-op", "email": "root@example.test", "role": "clinician"}, format="json"
    )
    assert response.status_code == 404 and error_code(response) == "user_not_found"
    assert not Membership.objects.filter(clinic=clinic_a, user__username="root-op").exists()
