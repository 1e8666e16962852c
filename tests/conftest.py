"""Shared fixtures: two clinics and the three principals every tenant test
uses — clinic A's admin, clinic A's clinician, and clinic B's user, who must
never see anything of clinic A."""

import pytest
from django.contrib.auth import get_user_model

from clinics.access import Principal
from clinics.models import Clinic, ClinicQuota, Membership, Role


# The two clinics record without the consent gate (``consent_required``, on by
# default for new clinics): most tests are about streaming, not consent. The
# gate's own tests (tests/sessions/test_consent.py and the socket and browser
# tests of it) turn it on.
@pytest.fixture
def clinic_a(db) -> Clinic:
    clinic = Clinic.objects.create(name="Clinic A", slug="clinic-a", default_language="en-US", consent_required=False)
    ClinicQuota.objects.create(clinic=clinic)
    return clinic


@pytest.fixture
def clinic_b(db) -> Clinic:
    clinic = Clinic.objects.create(name="Clinic B", slug="clinic-b", default_language="ja-JP", consent_required=False)
    ClinicQuota.objects.create(clinic=clinic)
    return clinic


def _member(clinic: Clinic, username: str, role: str):
    user = get_user_model().objects.create_user(username=username, password="pw-" + username)
    Membership.objects.create(clinic=clinic, user=user, role=role)
    return user


@pytest.fixture
def admin_a(clinic_a):
    return _member(clinic_a, "alice-admin-a", Role.ADMIN)


@pytest.fixture
def clinician_a(clinic_a):
    return _member(clinic_a, "carl-clinician-a", Role.CLINICIAN)


@pytest.fixture
def user_b(clinic_b):
    return _member(clinic_b, "bob-b", Role.ADMIN)


@pytest.fixture
def principal_admin_a(clinic_a, admin_a) -> Principal:
    return Principal(clinic=clinic_a, role=Role.ADMIN, user=admin_a)


@pytest.fixture
def principal_clinician_a(clinic_a, clinician_a) -> Principal:
    return Principal(clinic=clinic_a, role=Role.CLINICIAN, user=clinician_a)


@pytest.fixture
def principal_b(clinic_b, user_b) -> Principal:
    return Principal(clinic=clinic_b, role=Role.ADMIN, user=user_b)


# --- REST API: raw API keys and clients (keys are created through the service,
# so they are hashed exactly like production keys) -----------------------------


def _raw_key(clinic: Clinic, role: str, name: str) -> str:
    from clinics.services import api_key_create

    _, raw = api_key_create(clinic=clinic, role=role, name=name)
    return raw


@pytest.fixture
def api_key_a_admin(clinic_a) -> str:
    return _raw_key(clinic_a, Role.ADMIN, "a-admin")


@pytest.fixture
def api_key_a_clinician(clinic_a) -> str:
    return _raw_key(clinic_a, Role.CLINICIAN, "a-clinician")


@pytest.fixture
def api_key_b(clinic_b) -> str:
    return _raw_key(clinic_b, Role.ADMIN, "b-admin")


@pytest.fixture
def api_client():
    """An unauthenticated DRF test client."""
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def api_client_for():
    """``api_client_for(raw_key)`` → a client sending ``Authorization: Api-Key <raw_key>``."""
    from rest_framework.test import APIClient

    def make(raw_key: str) -> "APIClient":
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
        return client

    return make


@pytest.fixture
def tmp_media(settings, tmp_path):
    """default_storage as FileSystemStorage in a fresh temporary folder
    (Django resets default_storage when STORAGES changes)."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
    }
    return root


@pytest.fixture
def hold_stream_slot(settings):
    """``hold_stream_slot(clinic, session_id)``: hold one of the clinic's
    concurrent-stream slots in the live store, as a streaming producer that
    keeps renewing its lease does (in Redis, so server processes the test
    started see it too); released at teardown."""
    import time

    from transcription.live_state import _memory_store, quota_key

    held: list[tuple[str, str]] = []
    until = int((time.time() + 600) * 1000)

    def hold(clinic: Clinic, session_id: object) -> None:
        key, member = quota_key(clinic.pk), str(session_id)
        if settings.REDIS_URL:
            import redis

            with redis.Redis.from_url(settings.REDIS_URL) as client:
                client.zadd(key, {member: until})
        else:
            _memory_store._quota.setdefault(key, {})[member] = until
        held.append((key, member))

    yield hold

    for key, member in held:
        if settings.REDIS_URL:
            import redis

            with redis.Redis.from_url(settings.REDIS_URL) as client:
                client.zrem(key, member)
        else:
            _memory_store._quota.get(key, {}).pop(member, None)
