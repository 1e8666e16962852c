"""Admin fixtures: the three principals made staff (so they can sign in to
/admin/), a platform superuser, and one object of every admin-managed kind
in each clinic."""

from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model

from clinics.audit import audit_record
from clinics.models import ApiKey, AuditEvent, Clinic, Membership
from clinics.services import api_key_create
from sessions.models import ConsultationSession, TranscriptSegment


@dataclass
class ClinicRows:
    clinic: Clinic
    membership: Membership
    api_key: ApiKey
    session: ConsultationSession
    segment: TranscriptSegment
    audit_event: AuditEvent


def _rows(clinic: Clinic, user) -> ClinicRows:
    key, _raw = api_key_create(clinic=clinic, role="clinician", name=f"key of {clinic.slug}")
    session = ConsultationSession.objects.create(
        clinic=clinic,
        created_by=user,
        language=clinic.default_language,
        engine="fake",
        external_ref=f"ref-{clinic.slug}",
    )
    segment = TranscriptSegment.objects.create(
        clinic=clinic, session=session, segment_id="s1", start_ms=0, end_ms=900, text=f"hello from {clinic.slug}"
    )
    event = audit_record(clinic=clinic, action="test.event", object_type="session", object_id=session.pk)
    return ClinicRows(
        clinic=clinic,
        membership=Membership.objects.get(clinic=clinic, user=user),
        api_key=key,
        session=session,
        segment=segment,
        audit_event=event,
    )


@pytest.fixture
def rows_a(clinic_a, admin_a) -> ClinicRows:
    return _rows(clinic_a, admin_a)


@pytest.fixture
def rows_b(clinic_b, user_b) -> ClinicRows:
    return _rows(clinic_b, user_b)


@pytest.fixture
def staff_admin_a(admin_a):
    admin_a.is_staff = True
    admin_a.save(update_fields=["is_staff"])
    return admin_a


@pytest.fixture
def client_admin_a(client, staff_admin_a):
    client.force_login(staff_admin_a)
    return client


@pytest.fixture
def platform_user(db):
    return get_user_model().objects.create_superuser(username="platform-staff", password="pw-platform")


@pytest.fixture
def client_platform(client, platform_user):
    client.force_login(platform_user)
    return client
