"""Batch transcription: upload validation (stable error codes, nothing
created on rejection), background transcription with progress, the
transcript read like any other, tenant isolation, and the AWS engine
through the stand-in (success and a non-retryable failure)."""

import io
import json
import random
import wave

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from clinics.models import AuditEvent
from sessions.audio import wav_bytes
from sessions.models import ConsultationSession, SessionStatus
from tests.aws.conftest import numbered_chunks, words
from tests.transcribe_standin import Scenario
from transcription.batch import batch_wait

pytestmark = pytest.mark.django_db(transaction=True)


def _wav(pcm: bytes, *, rate=16000, channels=1, width=2) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def _upload(client, data: bytes, **fields):
    fields["file"] = SimpleUploadedFile("visit.wav", data, content_type="audio/wav")
    return client.post("/api/v1/transcriptions/", fields, format="multipart")


@pytest.fixture
def client_a(api_client_for, api_key_a_clinician):
    return api_client_for(api_key_a_clinician)


@pytest.fixture
def client_b(api_client_for, api_key_b):
    return api_client_for(api_key_b)


@pytest.fixture(autouse=True)
def _fake_engine(settings, tmp_media):
    settings.FAKE_ENGINE_MODE = "script"
    settings.FAKE_ENGINE_DELAY_MS = 0
    from transcription.engines import get_engine

    get_engine.cache_clear()
    yield
    batch_wait()


def test_it_transcribes_an_uploaded_wav_in_the_background(client_a, clinic_a):
    pcm = random.Random(1).randbytes(16000 * 2 * 9 // 2)  # 4.5 s
    response = _upload(client_a, _wav(pcm), external_ref="visit-7", language="en-US")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["source"] == "batch" and body["status"] == "live" and body["audio_duration_ms"] == 4500
    assert response["Location"] == f"/api/v1/sessions/{body['id']}/"
    batch_wait()

    session = client_a.get(f"/api/v1/sessions/{body['id']}/").json()
    assert (session["status"], session["progress"]) == ("ended", 100)
    transcript = client_a.get(f"/api/v1/sessions/{body['id']}/transcript/").json()
    segments = transcript["segments"] if isinstance(transcript, dict) else transcript
    assert [s["segment_id"] for s in segments] == ["fake-0", "fake-2000", "fake-4000"]
    stored = ConsultationSession.objects.get(pk=body["id"])
    assert stored.storage_key == f"{clinic_a.pk}/{stored.pk}/audio.wav"
    with default_storage.open(stored.storage_key, "rb") as fh:
        assert fh.read() == wav_bytes(pcm, 16000)
    with default_storage.open(f"{clinic_a.pk}/{stored.pk}/transcript.json", "rb") as fh:
        assert [s["segment_id"] for s in json.load(fh)["segments"]] == ["fake-0", "fake-2000", "fake-4000"]
    actions = list(AuditEvent.objects.filter(object_id=str(stored.pk)).values_list("action", flat=True))
    assert {"session.create", "audio.write", "transcript.write"} <= set(actions)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"not a wav file at all", "invalid_wav"),
        (_wav(b"\x01\x02" * 1600, channels=2), "unsupported_wav_format"),
        (_wav(b"\x01" * 3200, width=1), "unsupported_wav_format"),
        (_wav(b"\x01\x02" * 1600, rate=96000), "unsupported_sample_rate"),
        (_wav(b"\x01\x02" * 1600, rate=4000), "unsupported_sample_rate"),
        (_wav(b""), "empty_audio"),
    ],
)
def test_it_rejects_an_invalid_upload_with_a_stable_code_and_creates_nothing(client_a, data, code):
    response = _upload(client_a, data)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert ConsultationSession.objects.count() == 0


def test_it_rejects_an_upload_over_the_size_limit(client_a, settings):
    settings.BATCH_UPLOAD_MAX_BYTES = 2048
    response = _upload(client_a, _wav(b"\x01\x02" * 8000))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
    assert ConsultationSession.objects.count() == 0


def test_it_rejects_a_request_without_a_file_or_with_a_bad_language(client_a):
    response = client_a.post("/api/v1/transcriptions/", {"language": "en-US"}, format="multipart")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
    response = _upload(client_a, _wav(b"\x01\x02" * 1600), language="xx-XX")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
    response = client_a.post("/api/v1/transcriptions/", {"file": "x"}, format="json")
    assert response.status_code == 415
    assert ConsultationSession.objects.count() == 0


def test_it_hides_a_batch_session_from_another_clinic(client_a, client_b, api_client):
    response = _upload(client_a, _wav(random.Random(2).randbytes(16000)))
    session_id = response.json()["id"]
    batch_wait()
    assert client_b.get(f"/api/v1/sessions/{session_id}/").status_code == 404
    assert client_b.get(f"/api/v1/sessions/{session_id}/transcript/").status_code == 404
    assert client_b.get(f"/api/v1/sessions/{session_id}/audio/").status_code == 404
    assert api_client.post("/api/v1/transcriptions/", {}, format="multipart").status_code in (401, 403)


@pytest.fixture
def aws_clinic_a(clinic_a, settings, monkeypatch, transcribe_standin, standin_cert):
    clinic_a.transcription_engine = "aws"
    clinic_a.save(update_fields=["transcription_engine"])
    settings.AWS_TRANSCRIBE_ENDPOINT_URL = transcribe_standin.url
    settings.AWS_TRANSCRIBE_REGIONS = ["ap-northeast-1"]
    monkeypatch.setenv("SSL_CERT_FILE", standin_cert[0])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "standin-secret")
    from transcription.engine_quota import LocalEngineQuota, limits_from_settings
    from transcription.engines import get_engine

    get_engine.cache_clear()
    quota = LocalEngineQuota(limits_from_settings(poll_seconds=0.05))
    monkeypatch.setattr("transcription.engine_quota.get_engine_quota", lambda: quota)
    return clinic_a


def test_it_transcribes_a_batch_with_aws_through_the_stand_in(aws_clinic_a, client_a, transcribe_standin):
    audio = b"".join(numbered_chunks(12))
    response = _upload(client_a, _wav(audio), language="ja-JP")
    assert response.status_code == 202
    batch_wait()
    session_id = response.json()["id"]
    session = client_a.get(f"/api/v1/sessions/{session_id}/").json()
    assert (session["status"], session["progress"], session["engine"]) == ("ended", 100, "aws")
    transcript = client_a.get(f"/api/v1/sessions/{session_id}/transcript/").json()
    segments = transcript["segments"] if isinstance(transcript, dict) else transcript
    assert " ".join(s["text"] for s in segments).split() == words(12)
    assert bytes(transcribe_standin.requests[0].audio) == audio
    assert transcribe_standin.requests[0].headers["x-amzn-transcribe-language-code"] == "ja-JP"


def test_it_fails_a_batch_on_a_non_retryable_engine_error_and_keeps_the_audio(
    aws_clinic_a, client_a, transcribe_standin
):
    transcribe_standin.script.append(Scenario(fail_after_bytes=3200 * 3, fail_exception="BadRequestException"))
    response = _upload(client_a, _wav(b"".join(numbered_chunks(8))))
    batch_wait()
    session = ConsultationSession.objects.get(pk=response.json()["id"])
    assert (session.status, session.failure_reason) == (SessionStatus.FAILED, "aws_bad_request")
    assert default_storage.exists(session.storage_key)


def test_it_labels_speakers_when_asked_and_shows_the_first_guess(client_a, settings):
    settings.TRANSCRIPTION_SPEAKER_LABELS = True
    pcm = random.Random(2).randbytes(16000 * 2 * 3)  # 3 s
    body = _upload(client_a, _wav(pcm), language="en-US").json()
    batch_wait()
    transcript = client_a.get(f"/api/v1/sessions/{body['id']}/transcript/").json()
    assert {(s["speaker"], s["speaker_role"]) for s in transcript["segments"]} == {("spk_0", "clinician")}
    text = client_a.get(f"/api/v1/sessions/{body['id']}/transcript/?format=txt").content.decode()
    assert text.startswith("Clinician (spk_0): ")
