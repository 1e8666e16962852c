"""Issue 11: with the server trusting every proxy (uvicorn rewrote the peer
to X-Forwarded-For's *first*, client-chosen entry), the viewer socket audited
that address, and a non-IP there closed the socket with 1011. The socket
must record the last trusted hop, like REST, and never fail on the header."""

import pytest

from clinics.models import AuditEvent
from tests.transcription.helpers import adb, atoken_for, communicator, make_session, receive_until

pytestmark = pytest.mark.django_db(transaction=True)

PROXY = ("HTTP_X_FORWARDED_PROTO", "https")


@pytest.fixture(autouse=True)
def _media(stream_settings):
    """Socket tests run with tests/transcription/conftest.py's stream settings."""


async def _view(principal, session, forwarded: str) -> AuditEvent:
    viewer = communicator(
        session.pk,
        "live",
        token=await atoken_for(principal, session),
        headers=[(b"x-forwarded-for", forwarded.encode())],
    )
    viewer.scope["client"] = (forwarded.split(",")[0].strip(), 0)  # what uvicorn with "*" passed on
    connected, _ = await viewer.connect()
    assert connected
    begin, _ = await receive_until(viewer, "Begin")
    assert begin["type"] == "Begin"
    await viewer.disconnect()
    return await adb(AuditEvent.objects.get)(object_id=str(session.pk), action="transcript.live_view")


@pytest.mark.parametrize("forwarded", ["6.6.6.6, 10.0.0.7", "not-an-ip, 10.0.0.7"])
async def test_it_audits_the_last_hop_for_a_viewer(settings, principal_clinician_a, forwarded):
    settings.SECURE_PROXY_SSL_HEADER = PROXY
    session = await adb(make_session)(principal_clinician_a, status="ended")
    event = await _view(principal_clinician_a, session, forwarded)
    assert event.client_ip == "10.0.0.7"


async def test_it_stores_no_address_when_the_last_hop_is_not_an_ip(settings, principal_clinician_a):
    settings.SECURE_PROXY_SSL_HEADER = PROXY
    session = await adb(make_session)(principal_clinician_a, status="ended")
    event = await _view(principal_clinician_a, session, "10.0.0.7, not-an-ip")
    assert event.client_ip is None
