import pytest
from django.test import Client

from clinics.models import Clinic, ClinicQuota, Membership, Role
from sessions.models import ConsultationSession, TranscriptSegment


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def session_a(clinic_a, clinician_a) -> ConsultationSession:
    session = ConsultationSession.objects.create(
        clinic=clinic_a,
        created_by=clinician_a,
        external_ref="chart-0042",
        language="en-US",
        engine="fake",
        status="ended",
        audio_duration_ms=65_000,
        audio_bytes=2_080_000,
    )
    for i, text in enumerate(["patient reports mild headache", "no fever"]):
        TranscriptSegment.objects.create(
            clinic=clinic_a, session=session, segment_id=f"s{i}", start_ms=i * 2000, end_ms=i * 2000 + 1900, text=text
        )
    return session


@pytest.fixture
def clinic_c(db) -> Clinic:
    clinic = Clinic.objects.create(name="Clinic C", slug="clinic-c", default_language="ja-JP")
    ClinicQuota.objects.create(clinic=clinic)
    return clinic


@pytest.fixture
def two_clinic_user(clinic_a, clinic_c, clinician_a):
    """Clinic A's clinician who also works (as admin) in clinic C."""
    Membership.objects.create(clinic=clinic_c, user=clinician_a, role=Role.ADMIN)
    return clinician_a
