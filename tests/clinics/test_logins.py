"""Login throttling (django-axes) and the failed-login audit, on both login
pages."""

import pytest
from django.urls import reverse

from clinics.models import AuditEvent

LOGIN_PAGES = ["console:login", "admin:login"]


@pytest.fixture
def staff_admin_a(admin_a):
    admin_a.is_staff = True
    admin_a.save(update_fields=["is_staff"])
    return admin_a


def _login(client, page: str, username: str, password: str, ip: str = "198.51.100.7"):
    return client.post(reverse(page), {"username": username, "password": password}, REMOTE_ADDR=ip)


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_it_refuses_the_right_password_after_too_many_wrong_ones(client, settings, staff_admin_a, page):
    settings.AXES_FAILURE_LIMIT = 5
    for attempt in range(4):
        assert _login(client, page, staff_admin_a.username, f"wrong-{attempt}").status_code == 200  # form again
    assert _login(client, page, staff_admin_a.username, "wrong-5").status_code == 429  # the fifth locks
    locked = _login(client, page, staff_admin_a.username, "pw-" + staff_admin_a.username)
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_it_locks_a_username_out_from_every_address(client, settings, clinician_a):
    settings.AXES_FAILURE_LIMIT = 3
    for attempt in range(3):
        _login(client, "console:login", clinician_a.username, "wrong", ip=f"203.0.113.{attempt + 1}")
    assert _login(client, "console:login", clinician_a.username, "pw-" + clinician_a.username).status_code == 429


def test_it_locks_an_address_out_for_every_username(client, settings, clinician_a, user_b):
    settings.AXES_FAILURE_LIMIT = 3
    for attempt in range(3):
        _login(client, "console:login", f"nobody-{attempt}", "wrong", ip="203.0.113.50")
    assert (
        _login(client, "console:login", user_b.username, "pw-" + user_b.username, ip="203.0.113.50").status_code == 429
    )
    # Another address is not affected.
    signed_in = _login(client, "console:login", clinician_a.username, "pw-" + clinician_a.username, ip="203.0.113.51")
    assert signed_in.status_code == 302


def test_it_still_signs_in_after_a_few_typos(client, settings, clinician_a):
    settings.AXES_FAILURE_LIMIT = 5
    for _ in range(3):
        _login(client, "console:login", clinician_a.username, "typo")
    assert _login(client, "console:login", clinician_a.username, "pw-" + clinician_a.username).status_code == 302


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_it_audits_each_failed_login_in_the_users_clinic(client, staff_admin_a, clinic_a, clinic_b, page):
    _login(client, page, staff_admin_a.username, "secret-typo", ip="198.51.100.9")
    rows = AuditEvent.objects.filter(action="auth.login_failed")
    assert [(r.clinic_id, r.object_type, r.object_id, r.client_ip) for r in rows] == [
        (clinic_a.pk, "user", str(staff_admin_a.pk), "198.51.100.9")
    ]
    assert rows[0].actor_user is None and rows[0].actor_label == "anonymous"
    assert "secret-typo" not in str(rows[0].details)
    assert not AuditEvent.objects.filter(clinic=clinic_b).exists()


def test_it_records_unknown_usernames_only_in_the_failure_log(db, client):
    from axes.models import AccessFailureLog

    _login(client, "console:login", "no-such-user", "x")
    assert not AuditEvent.objects.exists()
    assert AccessFailureLog.objects.filter(username="no-such-user").count() == 1


def test_it_counts_addresses_behind_the_load_balancer_by_their_forwarded_hop(client, settings, clinician_a):
    settings.AXES_FAILURE_LIMIT = 3
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    balancer = "10.0.0.7"
    for attempt in range(3):
        client.post(
            reverse("console:login"),
            {"username": f"nobody-{attempt}", "password": "x"},
            REMOTE_ADDR=balancer,
            HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.60",
        )
    locked = client.post(
        reverse("console:login"),
        {"username": clinician_a.username, "password": "pw-" + clinician_a.username},
        REMOTE_ADDR=balancer,
        HTTP_X_FORWARDED_FOR="203.0.113.60",
    )
    assert locked.status_code == 429
    # Another clinic behind the same balancer is not locked out with them.
    other = client.post(
        reverse("console:login"),
        {"username": clinician_a.username, "password": "pw-" + clinician_a.username},
        REMOTE_ADDR=balancer,
        HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.61",
    )
    assert other.status_code == 302
