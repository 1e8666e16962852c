"""Who may open the producer and viewer sockets: tokens, the logged-in
user on a trusted Origin, and tenant isolation (clinic B never reaches
clinic A's sessions)."""

import uuid

import pytest
from django.test import Client

from tests.transcription.helpers import (
    FRAME,
    adb,
    atoken_for,
    communicator,
    expect_close,
    make_session,
    pcm,
    receive_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

KINDS = ["stream", "live"]


@pytest.fixture(autouse=True)
def _media(stream_settings):
    """Socket tests run with tests/transcription/conftest.py's stream settings."""


@pytest.fixture
def session_a(principal_clinician_a):
    return make_session(principal_clinician_a)


async def _closed_with(comm) -> tuple[int, dict]:
    connected, _ = await comm.connect()
    assert connected  # accepted, so the client can read the Error and code
    code, messages = await expect_close(comm)
    await comm.disconnect()
    return code, messages[-1]


@pytest.mark.parametrize("kind", KINDS)
async def test_it_refuses_a_missing_or_forged_token_with_4401(kind, session_a):
    code, error = await _closed_with(communicator(session_a.pk, kind))
    assert (code, error["type"], error["code"]) == (4401, "Error", "auth_required")
    code, error = await _closed_with(communicator(session_a.pk, kind, token="forged.token"))
    assert (code, error["code"]) == (4401, "invalid_stream_token")


@pytest.mark.parametrize("kind", KINDS)
async def test_it_refuses_a_reused_token_with_4401(kind, principal_clinician_a, session_a):
    token = await atoken_for(principal_clinician_a, session_a)
    first = communicator(session_a.pk, kind, token=token)
    await first.connect()
    await receive_until(first, "Begin")
    code, error = await _closed_with(communicator(session_a.pk, kind, token=token))
    assert (code, error["code"]) == (4401, "invalid_stream_token")
    await first.disconnect()


@pytest.mark.parametrize("kind", KINDS)
async def test_it_answers_4404_for_another_clinics_session(kind, principal_b, principal_clinician_a, session_a):
    # Clinic B's token is for clinic B's own session; clinic A's id is not found.
    own_b = await adb(make_session)(principal_b)
    token_b = await atoken_for(principal_b, own_b)
    code, error = await _closed_with(communicator(session_a.pk, kind, token=token_b))
    assert code == 4401  # a token is bound to its session
    # Clinic B's logged-in user asking for clinic A's session: not found.
    code, error = await _closed_with(await _cookie_communicator(principal_b.user, session_a.pk, kind))
    assert (code, error["code"]) == (4404, "not_found")


@pytest.mark.parametrize("kind", KINDS)
async def test_it_answers_4404_for_an_unknown_session(kind, principal_clinician_a):
    code, error = await _closed_with(await _cookie_communicator(principal_clinician_a.user, uuid.uuid4(), kind))
    assert (code, error["code"]) == (4404, "not_found")


async def _cookie_communicator(
    user, session_id, kind, origin: bytes = b"http://testserver", host: bytes = b"testserver"
):
    client = Client()
    await adb(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    return communicator(session_id, kind, headers=[(b"cookie", cookie), (b"origin", origin), (b"host", host)])


async def test_it_accepts_the_logged_in_user_on_a_trusted_origin(principal_clinician_a, session_a, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    comm = await _cookie_communicator(principal_clinician_a.user, session_a.pk, "stream")
    await comm.connect()
    begin, _ = await receive_until(comm, "Begin")
    assert begin["session_id"] == str(session_a.pk)
    await comm.send_to(bytes_data=pcm(FRAME))
    await comm.disconnect()


async def test_it_refuses_a_cookie_from_a_foreign_origin(principal_clinician_a, session_a, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    comm = await _cookie_communicator(
        principal_clinician_a.user, session_a.pk, "stream", origin=b"https://evil.example"
    )
    connected, _ = await comm.connect()
    assert not connected  # refused at the handshake


async def test_it_lets_a_token_through_from_any_origin_but_ignores_its_cookie(
    principal_clinician_a, session_a, settings
):
    settings.ALLOWED_HOSTS = ["testserver"]
    token = await atoken_for(principal_clinician_a, session_a)
    comm = communicator(session_a.pk, "live", token=token, headers=[(b"origin", b"https://integrator.example")])
    await comm.connect()
    begin, _ = await receive_until(comm, "Begin")
    assert begin["type"] == "Begin"
    await comm.disconnect()


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (b"http://127.0.0.1:9999", b"127.0.0.1:8000"),  # another port
        (b"http://testserver:8443", b"testserver"),
        (b"https://testserver", b"testserver"),  # another scheme than the socket's page
        (b"null", b"testserver"),
    ],
)
async def test_it_refuses_a_cookie_from_an_origin_of_another_port_or_scheme(
    principal_clinician_a, session_a, settings, origin, host
):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1"]
    comm = await _cookie_communicator(principal_clinician_a.user, session_a.pk, "stream", origin=origin, host=host)
    connected, _ = await comm.connect()
    assert not connected


async def test_it_accepts_a_cookie_from_a_listed_origin(principal_clinician_a, session_a, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.WS_ALLOWED_ORIGINS = ["https://console.clinic-example.jp"]
    comm = await _cookie_communicator(
        principal_clinician_a.user, session_a.pk, "live", origin=b"https://console.clinic-example.jp"
    )
    connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()


async def test_it_refuses_a_handshake_for_a_host_it_does_not_serve(principal_clinician_a, session_a, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    token = await atoken_for(principal_clinician_a, session_a)
    comm = communicator(session_a.pk, "live", token=token, headers=[(b"host", b"evil.example")])
    connected, _ = await comm.connect()
    assert not connected
