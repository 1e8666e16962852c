"""A batch session (an uploaded WAV being transcribed) is "live" while its
job runs, but takes no producer: a stream attached to it used to replace
the uploaded audio with its own parts when it sealed the session (found in
review)."""

import pytest

from sessions.models import ConsultationSession
from tests.transcription.helpers import adb, atoken_for, communicator, expect_close

pytestmark = pytest.mark.django_db(transaction=True)


def _batch_session(clinic) -> ConsultationSession:
    return ConsultationSession.objects.create(
        clinic=clinic,
        language="en-US",
        engine="fake",
        source="batch",
        status="live",
        audio_bytes=64_000,
        audio_sha256="a" * 64,
        storage_key=f"{clinic.pk}/x/audio.wav",
    )


def test_it_refuses_a_stream_token_for_a_batch_session(clinic_a, api_key_a_admin, api_client_for):
    session = _batch_session(clinic_a)
    response = api_client_for(api_key_a_admin).post(f"/api/v1/sessions/{session.pk}/stream-token/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "batch_session"


async def test_it_closes_a_producer_on_a_batch_session_with_4409_and_keeps_its_audio(tmp_media, principal_admin_a):
    session = await adb(_batch_session)(principal_admin_a.clinic)
    comm = communicator(session.pk, token=await atoken_for(principal_admin_a, session))
    await comm.connect()
    code, messages = await expect_close(comm)
    assert code == 4409 and messages[-1]["code"] == "batch_session"
    await comm.disconnect()
    after = await adb(ConsultationSession.objects.get)(pk=session.pk)
    assert (after.status, after.audio_bytes, after.audio_sha256) == ("live", 64_000, "a" * 64)
    assert not any(tmp_media.rglob("*.pcm"))
