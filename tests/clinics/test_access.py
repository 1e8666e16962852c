import pytest

from clinics import access
from sessions.models import ConsultationSession
from voiceai.errors import Forbidden, NotFound


@pytest.fixture
def session_a(clinic_a, clinician_a) -> ConsultationSession:
    return ConsultationSession.objects.create(clinic=clinic_a, created_by=clinician_a, language="en-US", engine="fake")


def test_it_returns_the_session_to_its_own_clinic(principal_clinician_a, session_a):
    assert access.access_session(principal_clinician_a, session_a.id) == session_a


def test_it_answers_not_found_for_another_clinics_session(principal_b, session_a):
    with pytest.raises(NotFound):
        access.access_session(principal_b, session_a.id)


def test_it_answers_not_found_for_malformed_ids(principal_b):
    with pytest.raises(NotFound):
        access.access_session(principal_b, "not-a-uuid")


def test_it_lists_only_the_principals_clinic(principal_b, principal_clinician_a, session_a):
    assert list(access.sessions_visible_to(principal_b)) == []
    assert list(access.sessions_visible_to(principal_clinician_a)) == [session_a]


def test_it_refuses_key_management_to_clinicians(principal_clinician_a):
    with pytest.raises(Forbidden):
        access.api_keys_visible_to(principal_clinician_a)


def test_it_refuses_a_suspended_clinics_user(clinic_a, clinician_a):
    clinic_a.is_active = False
    clinic_a.save()
    with pytest.raises(Forbidden) as info:
        access.principal_for_user(clinician_a)
    assert info.value.code == "clinic_suspended"


def test_it_hides_clinics_the_user_does_not_belong_to(clinic_b, clinician_a):
    with pytest.raises(NotFound):
        access.principal_for_user(clinician_a, clinic_id=clinic_b.id)
