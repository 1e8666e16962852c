"""A user in two clinics, one of them suspended: the logged-in (cookie)
socket of the active clinic's session used to be refused with 4403
clinic_suspended because the suspended clinic came first (found in
review). A session of the suspended clinic itself stays refused."""

import pytest
from django.test import Client

from clinics.models import Clinic, ClinicQuota, Membership, Role
from tests.transcription.helpers import adb, communicator, expect_close, make_session, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_clinics(tmp_media, principal_clinician_a):
    """Clinic A (active) plus "Aardvark" (suspended, listed first) for A's clinician."""
    aardvark = Clinic.objects.create(name="Aardvark Clinic", slug="aardvark", default_language="en-US")
    ClinicQuota.objects.create(clinic=aardvark)
    Membership.objects.create(clinic=aardvark, user=principal_clinician_a.user, role=Role.CLINICIAN)
    suspended_session = make_session(principal_clinician_a)
    suspended_session.clinic = aardvark
    suspended_session.save(update_fields=["clinic"])
    aardvark.is_active = False
    aardvark.save(update_fields=["is_active"])
    return make_session(principal_clinician_a), suspended_session


async def _cookie_communicator(user, session_id, kind):
    client = Client()
    await adb(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    return communicator(
        session_id, kind, headers=[(b"cookie", cookie), (b"origin", b"http://testserver"), (b"host", b"testserver")]
    )


@pytest.mark.parametrize("kind", ["stream", "live"])
async def test_it_opens_the_active_clinics_session_for_a_user_also_in_a_suspended_clinic(
    two_clinics, principal_clinician_a, settings, kind
):
    settings.ALLOWED_HOSTS = ["testserver"]
    active_session, suspended_session = two_clinics
    comm = await _cookie_communicator(principal_clinician_a.user, active_session.pk, kind)
    await comm.connect()
    begin, _ = await receive_until(comm, "Begin")
    assert begin["session_id"] == str(active_session.pk)
    await comm.disconnect()

    comm = await _cookie_communicator(principal_clinician_a.user, suspended_session.pk, kind)
    await comm.connect()
    code, messages = await expect_close(comm)
    assert code == 4403 and messages[-1]["code"] == "clinic_suspended"
    await comm.disconnect()
