"""A live session whose client dropped and which is then ended over REST
(or by an admin) has no producer to seal it: its acknowledged audio stayed
in parts, with no WAV, no sha256 and audio_bytes 0, so GET .../audio/
answered 404 and the audio counted for no quota (found in review)."""

import asyncio
import hashlib
import io
import wave

import pytest
from django.db import connection

from sessions.models import ConsultationSession
from tests.transcription.helpers import FRAME, adb, atoken_for, communicator, pcm, receive_until
from transcription.live_state import producer_attached

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _close_thread_connections():
    connection.settings_dict["CONN_MAX_AGE"] = 0


async def _dropped_stream(principal, frames: int) -> tuple[ConsultationSession, bytes]:
    session = await adb(ConsultationSession.objects.create)(clinic=principal.clinic, language="en-US", engine="fake")
    comm = communicator(session.pk, token=await atoken_for(principal, session))
    await comm.connect()
    await receive_until(comm, "Begin")
    sent = b"".join(pcm(FRAME, seed=i) for i in range(frames))
    for i in range(frames):
        await comm.send_to(bytes_data=sent[i * FRAME : (i + 1) * FRAME])
    ack = {"audio_bytes_durable": 0}
    while ack["audio_bytes_durable"] < len(sent):
        ack, _ = await receive_until(comm, "Ack")
    await comm.disconnect()  # no CloseStream: the client is gone
    for _ in range(100):
        if not await adb(producer_attached)(clinic_id=session.clinic_id, session_id=session.pk):
            break
        await asyncio.sleep(0.05)
    return session, sent


async def test_it_seals_the_audio_of_a_dropped_session_ended_over_rest(
    tmp_media, settings, clinic_a, api_key_a_admin, api_client_for, principal_admin_a
):
    settings.AUDIO_FLUSH_SECONDS = 0.2
    session, sent = await _dropped_stream(principal_admin_a, frames=12)
    client = api_client_for(api_key_a_admin)
    ended = await adb(client.post)(f"/api/v1/sessions/{session.pk}/end/")
    assert ended.status_code == 200

    body = (await adb(client.get)(f"/api/v1/sessions/{session.pk}/")).json()
    assert body["status"] == "ended" and body["audio_bytes"] == len(sent)
    audio = await adb(client.get)(f"/api/v1/sessions/{session.pk}/audio/")
    assert audio.status_code == 200
    wav = b"".join([chunk async for chunk in audio.streaming_content])  # an async iterator (ASGI)
    with wave.open(io.BytesIO(wav)) as reader:
        assert reader.readframes(reader.getnframes()) == sent
    assert body["audio_sha256"] == hashlib.sha256(wav).hexdigest()


async def test_it_leaves_a_never_streamed_session_without_audio_when_ended(
    tmp_media, clinic_a, api_key_a_admin, api_client_for
):
    session = await adb(ConsultationSession.objects.create)(clinic=clinic_a, language="en-US", engine="fake")
    client = api_client_for(api_key_a_admin)
    assert (await adb(client.post)(f"/api/v1/sessions/{session.pk}/end/")).status_code == 200
    body = (await adb(client.get)(f"/api/v1/sessions/{session.pk}/")).json()
    assert (body["status"], body["audio_bytes"], body["audio_sha256"]) == ("ended", 0, "")
    assert not any(tmp_media.rglob("*"))
