"""The consent gate at the producer's connect: a clinic that requires the
patient's consent refuses a session without it (Error ``consent_required``,
close 4428) before anything is claimed, stored or audited as a stream; with
consent recorded the same session streams. The check reads the session row
and clinic the connect reads anyway: no query of its own."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clinics.models import AuditEvent
from clinics.principals import stream_token_issue
from sessions.audio_store import parts_list
from sessions.models import SessionStatus
from sessions.services import consent_record
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
from transcription.connect import producer_connect
from transcription.live_state import MemoryLiveStore
from transcription.socket_auth import authorize
from voiceai.errors import ConsentRequired

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def consent_clinic(clinic_a):
    clinic_a.consent_required = True
    clinic_a.save(update_fields=["consent_required"])
    return clinic_a


async def test_it_refuses_a_producer_without_consent_before_any_audio_is_stored(
    stream_settings, consent_clinic, principal_clinician_a
):
    session = await adb(make_session)(principal_clinician_a)
    producer = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
    connected, _ = await producer.connect()
    assert connected
    await producer.send_to(bytes_data=pcm(FRAME))  # audio sent anyway is never stored
    close_code, messages = await expect_close(producer)
    await producer.disconnect()

    assert close_code == 4428
    assert messages[-1]["type"] == "Error" and messages[-1]["code"] == "consent_required"
    assert messages[-1]["retryable"] is False
    await adb(session.refresh_from_db)()
    assert session.status == SessionStatus.CREATED and session.started_at is None
    assert await adb(lambda: parts_list(session))() == []
    assert not await adb(AuditEvent.objects.filter(action="stream.start").exists)()


async def test_it_streams_once_consent_is_recorded(stream_settings, consent_clinic, principal_clinician_a):
    session = await adb(make_session)(principal_clinician_a)
    await adb(consent_record)(principal=principal_clinician_a, session=session, method="verbal")
    producer = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
    connected, _ = await producer.connect()
    assert connected
    begin, _ = await receive_until(producer, "Begin")
    assert begin["session_id"] == str(session.pk)
    await producer.disconnect()


def test_it_checks_consent_without_a_query_of_its_own(tmp_media, consent_clinic, principal_clinician_a):
    """A refused connect runs exactly the queries of the principal core
    (token, session, clinic): the gate reads what they read."""

    def fresh_token() -> tuple[str, str]:
        session = make_session(principal_clinician_a)
        return stream_token_issue(principal=principal_clinician_a, session=session).token, str(session.pk)

    token, session_id = fresh_token()
    with CaptureQueriesContext(connection) as auth_only:
        authorize(token=token, web_session_key=None, session_id=session_id, client_ip=None)

    token, session_id = fresh_token()
    with CaptureQueriesContext(connection) as refused, pytest.raises(ConsentRequired):
        producer_connect(
            token=token, web_session_key=None, session_id=session_id, client_ip=None,
            live=MemoryLiveStore(), owner="test", takeover=False, finals_received=None,
        )  # fmt: skip
    assert len(auth_only.captured_queries) > 0
    assert len(refused.captured_queries) == len(auth_only.captured_queries)
