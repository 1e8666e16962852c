"""The principal core: the same rules for every entry point — an API key's
own clinic only, a user's chosen clinic if they belong to it, a stream token
once and for its session only, another clinic's session as a missing one."""

import pytest
from django.core import signing
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clinics.access import Principal, principal_for_api_key
from clinics.models import ApiKey, Clinic, ClinicQuota, Membership, Role, UsedStreamToken
from clinics.principals import (
    InvalidStreamToken,
    admin_principals_of,
    principal_for_caller,
    principal_for_socket,
    stream_token_issue,
)
from sessions.models import ConsultationSession
from voiceai.errors import ClinicSuspended, NotFound

pytestmark = pytest.mark.django_db


def _session(clinic) -> ConsultationSession:
    return ConsultationSession.objects.create(clinic=clinic, language="en-US", engine="fake")


def test_it_gives_an_api_key_its_own_clinic_only(clinic_a, clinic_b, api_key_a_admin):
    key = ApiKey.objects.get(clinic=clinic_a)
    principal = principal_for_caller(api_key=key, wanted_clinic=str(clinic_a.pk), client_ip="10.0.0.7")
    assert (principal.clinic, principal.api_key, principal.client_ip) == (clinic_a, key, "10.0.0.7")
    with pytest.raises(NotFound):
        principal_for_caller(api_key=key, wanted_clinic=str(clinic_b.pk))


def test_it_gives_a_user_the_chosen_clinic_and_refuses_a_foreign_one(clinic_a, clinic_b, admin_a, user_b):
    Membership.objects.create(clinic=clinic_b, user=admin_a, role=Role.CLINICIAN)
    chosen = principal_for_caller(user=admin_a, wanted_clinic=str(clinic_b.pk))
    assert (chosen.clinic, chosen.role) == (clinic_b, Role.CLINICIAN)
    with pytest.raises(NotFound):
        principal_for_caller(user=user_b, wanted_clinic=str(clinic_a.pk))


def test_it_falls_back_to_the_first_clinic_when_the_remembered_one_was_left(clinic_a, clinic_b, admin_a):
    principal = principal_for_caller(user=admin_a, remembered_clinic=str(clinic_b.pk))
    assert principal.clinic == clinic_a


def test_it_refuses_a_suspended_clinic(clinic_a, admin_a):
    clinic_a.is_active = False
    clinic_a.save(update_fields=["is_active"])
    with pytest.raises(ClinicSuspended):
        principal_for_caller(user=admin_a)
    assert admin_principals_of(admin_a, client_ip=None) == []


def test_it_lists_admin_principals_only_for_administered_clinics(clinic_a, clinic_b, admin_a, clinician_a):
    admin_a.is_staff = clinician_a.is_staff = True
    Membership.objects.create(clinic=clinic_b, user=admin_a, role=Role.CLINICIAN)
    assert [p.clinic for p in admin_principals_of(admin_a, client_ip="10.0.0.7")] == [clinic_a]
    assert admin_principals_of(clinician_a, client_ip=None) == []


def test_it_spends_a_stream_token_once_and_for_its_session_only(principal_clinician_a, clinic_a):
    session, other = _session(clinic_a), _session(clinic_a)
    token = stream_token_issue(principal=principal_clinician_a, session=session).token
    with pytest.raises(InvalidStreamToken):
        principal_for_socket(token=token, user=None, session_id=other.pk, client_ip=None)
    principal, found = principal_for_socket(token=token, user=None, session_id=session.pk, client_ip="10.0.0.7")
    assert (principal.clinic, found, principal.client_ip) == (clinic_a, session, "10.0.0.7")
    with pytest.raises(InvalidStreamToken):
        principal_for_socket(token=token, user=None, session_id=session.pk, client_ip=None)


def test_it_answers_another_clinics_session_at_a_socket_like_a_missing_one(clinic_a, user_b):
    session = _session(clinic_a)
    with pytest.raises(NotFound) as info:
        principal_for_socket(token=None, user=user_b, session_id=session.pk, client_ip=None)
    assert (info.value.code, info.value.message) == ("not_found", "Session not found.")
    with pytest.raises(InvalidStreamToken) as info:
        principal_for_socket(token=None, user=None, session_id=session.pk, client_ip=None)
    assert info.value.code == "auth_required"


def _key_principal(clinic) -> Principal:
    return principal_for_api_key(ApiKey.objects.get(clinic=clinic))


def test_it_spends_an_api_key_token_in_one_statement_with_the_clinic_and_quota(clinic_a, api_key_a_clinician):
    ClinicQuota.objects.update_or_create(clinic=clinic_a, defaults={"max_concurrent_sessions": 7})
    session = _session(clinic_a)
    token = stream_token_issue(principal=_key_principal(clinic_a), session=session).token
    with CaptureQueriesContext(connection) as queries:
        principal, found = principal_for_socket(token=token, user=None, session_id=session.pk, client_ip="10.0.0.7")
        # Everything the connect reads of them came with that statement.
        read = (principal.clinic.quota.max_concurrent_sessions, found.language, found.clinic.is_active)
    if connection.vendor == "postgresql":  # (SQLite, ``make run``: the ORM's queries)
        assert len(queries) == 1
    assert read == (7, "en-US", True)
    assert (principal.clinic, principal.api_key.clinic, found, principal.client_ip) == (
        clinic_a,
        clinic_a,
        session,
        "10.0.0.7",
    )
    assert UsedStreamToken.objects.filter(clinic=clinic_a).count() == 1
    with pytest.raises(InvalidStreamToken) as info:
        principal_for_socket(token=token, user=None, session_id=session.pk, client_ip=None)
    assert info.value.message == "The stream token was already used."


def test_it_reads_no_quota_row_as_none_without_a_query(clinic_a, api_key_a_clinician):
    ClinicQuota.objects.filter(clinic=clinic_a).delete()
    session = _session(clinic_a)
    token = stream_token_issue(principal=_key_principal(clinic_a), session=session).token
    principal, _ = principal_for_socket(token=token, user=None, session_id=session.pk, client_ip=None)
    with CaptureQueriesContext(connection) as queries:
        assert getattr(principal.clinic, "quota", None) is None
    assert len(queries) == 0


def test_it_spends_no_api_key_token_on_another_clinics_session(clinic_a, clinic_b, api_key_a_clinician):
    # A token of clinic A's key naming clinic B's session (only a forged one
    # could): the session is looked up within the key's clinic, so it is missing.
    session_b = _session(clinic_b)
    token = stream_token_issue(principal=_key_principal(clinic_a), session=_session(clinic_a)).token
    payload = signing.loads(token, salt="voiceai.stream-token.v1")
    forged = signing.dumps({**payload, "s": str(session_b.pk)}, salt="voiceai.stream-token.v1", compress=True)
    with pytest.raises(NotFound) as info:
        principal_for_socket(token=forged, user=None, session_id=session_b.pk, client_ip=None)
    assert info.value.message == "Session not found."
    assert not UsedStreamToken.objects.exists()


def test_it_refuses_a_revoked_key_or_a_suspended_clinic_before_spending_the_token(clinic_a, api_key_a_clinician):
    session = _session(clinic_a)
    key = ApiKey.objects.get(clinic=clinic_a)
    token = stream_token_issue(principal=_key_principal(clinic_a), session=session).token
    Clinic.objects.filter(pk=clinic_a.pk).update(is_active=False)
    with pytest.raises(ClinicSuspended):
        principal_for_socket(token=token, user=None, session_id=session.pk, client_ip=None)
    Clinic.objects.filter(pk=clinic_a.pk).update(is_active=True)
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    with pytest.raises(InvalidStreamToken):
        principal_for_socket(token=token, user=None, session_id=session.pk, client_ip=None)
    assert not UsedStreamToken.objects.exists()
