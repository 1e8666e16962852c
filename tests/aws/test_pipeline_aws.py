"""The producer socket with the AWS engine behind the quota queue and the
resilient wrapper, in-process, against the stand-in: Warning then
transcripts on a retryable failure, Error and a failed session (audio kept)
on a non-retryable one, Queued then transcripts over the quota."""

import asyncio

import pytest
from django.core.files.storage import default_storage

from sessions.models import ConsultationSession, SessionStatus
from tests.aws.conftest import numbered_chunks, words
from tests.transcribe_standin import Scenario
from tests.transcription.helpers import adb, atoken_for, communicator, expect_close, make_session, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _aws_pipeline(settings, tmp_path, monkeypatch, transcribe_standin, standin_cert):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    settings.AUDIO_FLUSH_SECONDS = 0.2
    settings.AWS_TRANSCRIBE_ENDPOINT_URL = transcribe_standin.url
    settings.AWS_TRANSCRIBE_REGIONS = ["ap-northeast-1"]
    settings.ENGINE_STREAMS_PER_REGION = 1
    # The production path: trust and credentials from the environment.
    monkeypatch.setenv("SSL_CERT_FILE", standin_cert[0])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "standin-secret")
    from transcription.engine_quota import LocalEngineQuota, get_engine_quota, limits_from_settings
    from transcription.engines import get_engine

    get_engine.cache_clear()
    get_engine_quota.cache_clear()
    # In-process test: the in-memory quota (Redis is covered in test_engine_quota
    # and by the two-server test).
    monkeypatch.setattr(
        "transcription.engine_quota.get_engine_quota",
        lambda: _quota.setdefault("q", LocalEngineQuota(limits_from_settings(poll_seconds=0.05))),
    )
    _quota.clear()
    yield
    get_engine.cache_clear()


_quota: dict = {}


async def _open(principal, **fields):
    session = await adb(make_session)(principal, engine="aws", **fields)
    comm = communicator(session.pk, token=await atoken_for(principal, session))
    connected, _ = await comm.connect()
    assert connected
    await receive_until(comm, "Begin")
    return session, comm


def _finals(messages) -> list[str]:
    return " ".join(m["text"] for m in messages if m["type"] == "Transcript" and m["is_final"]).split()


async def test_it_warns_then_resumes_transcripts_after_a_dropped_upstream(principal_clinician_a, transcribe_standin):
    transcribe_standin.script.append(Scenario(fail_after_bytes=3200 * 8, fail_exception="drop"))
    _session, comm = await _open(principal_clinician_a)
    for chunk in numbered_chunks(15):
        await comm.send_to(bytes_data=chunk)
    warning, seen = await receive_until(comm, "Warning", seconds=10)
    assert warning["code"] == "engine_reconnecting" and warning["reason"] in {"aws_connection_closed", "aws_connection"}
    await comm.send_json_to({"type": "CloseStream"})
    code, rest = await expect_close(comm, seconds=15)
    assert code == 1000
    assert _finals(seen + rest) == words(15)
    assert rest[-1]["type"] == "Metadata" and rest[-1]["segments"] == 3
    assert len(transcribe_standin.requests) == 2
    await comm.disconnect()


async def test_it_fails_the_session_on_a_non_retryable_error_and_keeps_its_audio(
    principal_clinician_a, transcribe_standin
):
    transcribe_standin.script.append(Scenario(fail_after_bytes=3200 * 6, fail_exception="BadRequestException"))
    session, comm = await _open(principal_clinician_a)
    for chunk in numbered_chunks(10):
        await comm.send_to(bytes_data=chunk)
    code, messages = await expect_close(comm, seconds=15)
    await comm.disconnect()
    errors = [m for m in messages if m["type"] == "Error"]
    assert code == 1011 and errors and errors[0]["code"] == "aws_bad_request"
    stored = await adb(ConsultationSession.objects.get)(pk=session.pk)
    assert stored.status == SessionStatus.FAILED and stored.failure_reason == "aws_bad_request"
    # The audio it got is kept, sealed into the session's WAV.
    assert stored.audio_bytes == 32000 and stored.audio_sha256
    assert await adb(default_storage.size)(stored.storage_key) == 44 + 32000


async def test_it_queues_a_session_over_the_engine_quota_then_transcribes_it(
    principal_clinician_a, principal_b, transcribe_standin
):
    _first, comm1 = await _open(principal_clinician_a)
    for chunk in numbered_chunks(3, first=100):
        await comm1.send_to(bytes_data=chunk)
    _second, comm2 = await _open(principal_b)
    queued, _ = await receive_until(comm2, "Queued", seconds=10)
    assert queued == {"type": "Queued", "position": 1}
    for chunk in numbered_chunks(6):
        await comm2.send_to(bytes_data=chunk)
    await comm1.send_json_to({"type": "CloseStream"})
    code1, rest1 = await expect_close(comm1, seconds=15)
    assert code1 == 1000 and _finals(rest1) == words(3, 100)
    await comm1.disconnect()
    await comm2.send_json_to({"type": "CloseStream"})
    code2, rest2 = await expect_close(comm2, seconds=15)
    assert code2 == 1000 and _finals(rest2) == words(6)
    await comm2.disconnect()


async def test_it_completes_a_queued_session_after_the_producer_closed(
    principal_clinician_a, principal_b, transcribe_standin, monkeypatch
):
    import json

    from sessions.models import TranscriptSegment

    monkeypatch.setattr("transcription.stream.ENGINE_DRAIN_SECONDS", 0.3)
    _first, comm1 = await _open(principal_clinician_a)
    for chunk in numbered_chunks(3, first=100):
        await comm1.send_to(bytes_data=chunk)
    second, comm2 = await _open(principal_b)
    await receive_until(comm2, "Queued", seconds=10)
    for chunk in numbered_chunks(6):
        await comm2.send_to(bytes_data=chunk)
    await comm2.send_json_to({"type": "CloseStream"})
    code2, rest2 = await expect_close(comm2, seconds=15)
    assert code2 == 1000 and rest2[-1] == {"type": "Metadata", "audio_ms": 600, "segments": 0}
    await comm2.disconnect()

    await comm1.send_json_to({"type": "CloseStream"})  # frees the slot
    await expect_close(comm1, seconds=15)
    await comm1.disconnect()

    def texts():
        return list(
            TranscriptSegment.objects.filter(session_id=second.pk).order_by("start_ms").values_list("text", flat=True)
        )

    rows: list[str] = []

    def stored() -> bool:
        rows[:] = texts()
        return len(rows) == 2

    async def poll():
        while not await adb(stored)():  # noqa: ASYNC110 (the rows come from another task's thread)
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), 15)
    assert " ".join(rows).split() == words(6)
    with default_storage.open(f"{second.clinic_id}/{second.pk}/transcript.json", "rb") as fh:
        assert len(json.load(fh)["segments"]) == 2
