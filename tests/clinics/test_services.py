import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from clinics import services
from clinics.models import ApiKey, AuditEvent, ClinicQuota, Membership, Role
from voiceai.errors import Conflict, InvalidInput


def test_it_creates_a_clinic_with_its_quota_and_an_audit_row(db):
    clinic = services.clinic_create(name="Clinic C", slug="clinic-c")
    assert clinic.default_language == "ja-JP"
    assert ClinicQuota.objects.filter(clinic=clinic).exists()
    assert AuditEvent.objects.filter(clinic=clinic, action="clinic.create").count() == 1


def test_it_refuses_a_taken_or_malformed_slug(clinic_a):
    with pytest.raises(Conflict):
        services.clinic_create(name="Other", slug="clinic-a")
    with pytest.raises(InvalidInput):
        services.clinic_create(name="Other", slug="Not A Slug")


def test_it_suspends_and_reactivates_with_audit_rows(clinic_a):
    services.clinic_suspend(clinic=clinic_a)
    clinic_a.refresh_from_db()
    assert clinic_a.is_active is False
    services.clinic_reactivate(clinic=clinic_a)
    clinic_a.refresh_from_db()
    assert clinic_a.is_active is True
    actions = set(AuditEvent.objects.filter(clinic=clinic_a).values_list("action", flat=True))
    assert {"clinic.suspend", "clinic.reactivate"} <= actions


def test_it_updates_quota_limits_and_refuses_unknown_or_negative(clinic_a):
    quota = services.quota_update(clinic=clinic_a, max_concurrent_sessions=3)
    assert quota.max_concurrent_sessions == 3
    event = AuditEvent.objects.get(clinic=clinic_a, action="quota.update")
    assert event.details["after"] == {"max_concurrent_sessions": 3}
    with pytest.raises(InvalidInput) as info:
        services.quota_update(clinic=clinic_a, bogus=1)
    assert info.value.code == "unknown_field"
    with pytest.raises(InvalidInput):
        services.quota_update(clinic=clinic_a, storage_bytes=-1)


def test_it_stores_only_the_hash_of_a_new_api_key(clinic_a, caplog):
    caplog.set_level(logging.DEBUG)
    key, raw = services.api_key_create(clinic=clinic_a, role=Role.CLINICIAN, name="ehr")
    assert raw.startswith(f"vai_{key.prefix}_") and len(key.prefix) == 8
    row = ApiKey.objects.get(pk=key.pk)
    assert raw not in (row.hashed_key, row.prefix, row.name)
    secret = raw.split("_", 2)[2]
    for event in AuditEvent.objects.all():
        assert secret not in str(event.details)
    assert secret not in caplog.text


def test_it_authenticates_a_raw_key_and_rejects_wrong_or_revoked_ones(clinic_a):
    key, raw = services.api_key_create(clinic=clinic_a, role=Role.ADMIN, name="ehr")
    assert services.api_key_authenticate(raw) == key
    assert services.api_key_authenticate(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    assert services.api_key_authenticate("vai_nothing") is None
    assert services.api_key_authenticate("") is None
    services.api_key_revoke(api_key=key)
    assert services.api_key_authenticate(raw) is None
    assert AuditEvent.objects.filter(action="api_key.revoke", object_id=str(key.pk)).exists()


def test_it_updates_last_used_at_at_most_once_a_minute(clinic_a):
    key, raw = services.api_key_create(clinic=clinic_a, role=Role.ADMIN, name="ehr")
    services.api_key_authenticate(raw)
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None
    services.api_key_authenticate(raw)
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=2))
    services.api_key_authenticate(raw)
    assert ApiKey.objects.get(pk=key.pk).last_used_at > first - timedelta(seconds=1)
    assert ApiKey.objects.get(pk=key.pk).last_used_at <= timezone.now()


def test_it_keeps_at_least_one_admin(clinic_a, admin_a, clinician_a):
    admin_membership = Membership.objects.get(user=admin_a)
    with pytest.raises(Conflict):
        services.membership_remove(membership=admin_membership)
    with pytest.raises(Conflict):
        services.membership_update(membership=admin_membership, role=Role.CLINICIAN)
    carl = Membership.objects.get(user=clinician_a)
    services.membership_update(membership=carl, role=Role.ADMIN)
    services.membership_update(membership=admin_membership, role=Role.CLINICIAN)
    services.membership_remove(membership=admin_membership)
    assert not Membership.objects.filter(user=admin_a).exists()
    actions = list(AuditEvent.objects.filter(clinic=clinic_a).values_list("action", flat=True))
    assert actions.count("member.update") == 2 and "member.remove" in actions


def test_it_adds_a_member_once(clinic_b, clinician_a):
    services.membership_add(clinic=clinic_b, user=clinician_a, role=Role.CLINICIAN)
    with pytest.raises(Conflict):
        services.membership_add(clinic=clinic_b, user=clinician_a, role=Role.ADMIN)
