"""Erasure right after ending a live session: the producer still drains the
engine, flushes and seals for a few seconds, and the audio parts it writes
then used to outlive the erasure (found in review). Erasure now waits until
the producer has let go of the session."""

import asyncio
import os

import pytest
from django.db import connection

from clinics.models import AuditEvent
from sessions.models import ConsultationSession
from sessions.services import session_end, session_erase
from tests.transcription.helpers import FRAME, adb, atoken_for, communicator, expect_close, pcm, receive_until
from transcription.live_state import get_live_store, producer_attached
from voiceai.errors import Conflict

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _close_thread_connections():
    connection.settings_dict["CONN_MAX_AGE"] = 0


@pytest.fixture
def _slow_drain(tmp_media, settings):
    settings.AUDIO_FLUSH_SECONDS = 0.2
    # The producer's engine drain after "ended" takes this long: the window.
    settings.FAKE_ENGINE_DELAY_MS = 1500
    return tmp_media


def _files_under(root, session: ConsultationSession) -> list[str]:
    base = root / str(session.clinic_id) / str(session.pk)
    return [os.path.join(d, f) for d, _, files in os.walk(base) for f in files]


async def test_it_refuses_erasure_until_the_ended_sessions_producer_let_go(_slow_drain, principal_admin_a):
    session = await adb(ConsultationSession.objects.create)(
        clinic=principal_admin_a.clinic, language="en-US", engine="fake"
    )
    comm = communicator(session.pk, token=await atoken_for(principal_admin_a, session))
    await comm.connect()
    await receive_until(comm, "Begin")
    for i in range(10):
        await comm.send_to(bytes_data=pcm(FRAME, seed=i))
    await receive_until(comm, "Ack")
    for i in range(10, 15):  # received but not yet flushed when the end arrives
        await comm.send_to(bytes_data=pcm(FRAME, seed=i))

    await adb(session_end)(principal=principal_admin_a, session=session)
    with pytest.raises(Conflict) as refused:
        await adb(session_erase)(principal=principal_admin_a, session=session)
    assert refused.value.code == "session_streaming"

    code, _ = await expect_close(comm, seconds=15)
    assert code == 1000
    await comm.disconnect()
    await adb(session_erase)(principal=principal_admin_a, session=session)
    await asyncio.sleep(0.5)  # nothing may land after the erasure either
    assert _files_under(_slow_drain, session) == []
    assert not await adb(ConsultationSession.objects.filter(pk=session.pk).exists)()
    assert await adb(AuditEvent.objects.filter(object_id=str(session.pk), action="session.erase").exists)()


async def test_it_erases_once_a_crashed_producers_lease_ran_out(_slow_drain, principal_admin_a, settings):
    settings.SESSION_LEASE_SECONDS = 1
    session = await adb(ConsultationSession.objects.create)(
        clinic=principal_admin_a.clinic, language="en-US", engine="fake", status="ended"
    )
    store = get_live_store()
    await store.claim(clinic_id=session.clinic_id, session_id=session.pk, owner="gone:1", takeover=False)
    assert await adb(producer_attached)(clinic_id=session.clinic_id, session_id=session.pk)
    with pytest.raises(Conflict):
        await adb(session_erase)(principal=principal_admin_a, session=session)
    await asyncio.sleep(1.2)  # a killed process renews nothing: the lease runs out
    await adb(session_erase)(principal=principal_admin_a, session=session)
    assert not await adb(ConsultationSession.objects.filter(pk=session.pk).exists)()
