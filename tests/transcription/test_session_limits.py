"""The clinic's session-length limit on the producer socket."""

import pytest

from clinics.models import ClinicQuota
from sessions.models import SessionStatus
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


@pytest.fixture(autouse=True)
def _media(stream_settings):
    """Socket tests run with tests/transcription/conftest.py's stream settings."""


async def test_it_warns_then_ends_a_session_at_the_clinics_maximum_length_keeping_its_audio(
    clinic_a, principal_clinician_a
):
    await adb(ClinicQuota.objects.filter(clinic=clinic_a).update)(max_session_seconds=1)
    session = await adb(make_session)(principal_clinician_a)
    comm = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
    assert (await comm.connect())[0]
    await receive_until(comm, "Begin")
    audio = pcm(FRAME * 15, seed=3)  # 1.5 s, past the 1 s limit
    for i in range(0, len(audio), FRAME):
        await comm.send_to(bytes_data=audio[i : i + FRAME])

    code, messages = await expect_close(comm, seconds=10)

    warnings = [m["code"] for m in messages if m["type"] == "Warning"]
    assert warnings == ["session_duration_near_limit", "session_duration_exceeded"]
    assert code == 1000 and messages[-1]["type"] == "Metadata"
    stored = await adb(type(session).objects.get)(pk=session.pk)
    assert stored.status == SessionStatus.ENDED
    assert stored.audio_bytes == len(audio)  # nothing received is dropped


async def test_it_leaves_sessions_under_the_limit_alone(clinic_a, principal_clinician_a):
    session = await adb(make_session)(principal_clinician_a)  # default limit: 2 h
    comm = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
    assert (await comm.connect())[0]
    await receive_until(comm, "Begin")
    for i in range(5):
        await comm.send_to(bytes_data=pcm(FRAME, seed=i))
    _, seen = await receive_until(comm, "Ack")
    assert not [m for m in seen if m["type"] == "Warning"]
    await comm.send_json_to({"type": "CloseStream"})
    code, rest = await expect_close(comm, seconds=10)
    assert code == 1000
    assert not [m for m in rest if m["type"] == "Warning"]
