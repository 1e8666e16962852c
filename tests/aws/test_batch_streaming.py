"""Batch uploads never held in memory: the upload is read in bounded pieces
while it is checked, stored and transcribed, and the whole recording is
counted against the clinic's storage, audio minutes and session length
before any of it is stored."""

import io
import random

import pytest
from django.core.files.storage import default_storage

from clinics.access import Principal
from clinics.models import Role
from sessions.audio import wav_bytes
from sessions.models import ConsultationSession
from tests.aws.test_batch import _upload, _wav
from transcription import batch
from transcription.batch import batch_create, batch_wait

pytestmark = pytest.mark.django_db(transaction=True)


class ReadRecorder(io.BytesIO):
    """An upload that remembers the largest single read made from it."""

    largest_read = 0

    def read(self, n: int | None = -1) -> bytes:
        data = super().read(n)
        self.largest_read = max(self.largest_read, len(data))
        return data

    @property
    def size(self) -> int:
        return len(self.getbuffer())


@pytest.fixture(autouse=True)
def _fake_engine(settings, tmp_media):
    settings.FAKE_ENGINE_MODE = "script"
    settings.FAKE_ENGINE_DELAY_MS = 0
    from transcription.engines import get_engine

    get_engine.cache_clear()
    yield
    batch_wait()


def test_it_reads_the_upload_in_bounded_pieces_and_stores_it_exactly(clinic_a, clinician_a):
    pcm = random.Random(5).randbytes(16000 * 2 * 60)  # 60 s, 1.9 MB: several pieces
    upload = ReadRecorder(_wav(pcm))
    principal = Principal(clinic=clinic_a, role=Role.CLINICIAN, user=clinician_a)
    session = batch_create(principal=principal, upload=upload, language="en-US")
    assert upload.largest_read <= batch.READ_CHUNK
    with default_storage.open(session.storage_key, "rb") as fh:
        assert fh.read() == wav_bytes(pcm, 16000)
    batch_wait()
    session.refresh_from_db()
    assert (session.status, session.progress, session.audio_bytes) == ("ended", 100, len(pcm))


def test_it_hands_the_job_no_audio_in_memory(clinic_a, clinician_a, monkeypatch):
    started = []
    monkeypatch.setattr(batch, "batch_start", lambda **kwargs: started.append(kwargs))
    principal = Principal(clinic=clinic_a, role=Role.CLINICIAN, user=clinician_a)
    batch_create(principal=principal, upload=ReadRecorder(_wav(b"\x01\x02" * 16000)))
    assert len(started) == 1 and set(started[0]) == {"principal", "session_id"}


def test_it_refuses_an_upload_longer_than_the_clinics_session_limit(api_client_for, api_key_a_clinician, clinic_a):
    clinic_a.quota.max_session_seconds = 2
    clinic_a.quota.save()
    response = _upload(api_client_for(api_key_a_clinician), _wav(b"\x01\x02" * 16000 * 3))  # 3 s
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "session_duration_exceeded"
    assert response.json()["error"]["details"] == {"max_session_seconds": 2, "audio_seconds": 3}
    assert ConsultationSession.objects.count() == 0


def test_it_refuses_an_upload_larger_than_the_storage_left(api_client_for, api_key_a_clinician, clinic_a):
    ConsultationSession.objects.create(clinic=clinic_a, language="en-US", engine="fake", audio_bytes=90_000)
    clinic_a.quota.storage_bytes = 100_000
    clinic_a.quota.save()
    response = _upload(api_client_for(api_key_a_clinician), _wav(b"\x01\x02" * 16000))  # 32,000 bytes
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "storage_quota_exceeded"
    assert response.json()["error"]["details"] == {"storage_bytes_left": 10_000}
    assert ConsultationSession.objects.count() == 1


def test_it_skips_odd_chunks_and_a_data_size_past_the_end(clinic_a, clinician_a):
    pcm = b"\x03\x04" * 4000
    riff = _wav(pcm)
    # A LIST chunk before the data, and a data chunk that claims more than the file holds.
    fmt_end = 12 + 8 + 16
    listing = b"LIST" + (6).to_bytes(4, "little") + b"INFOxx"
    data = b"data" + (10**9).to_bytes(4, "little") + pcm
    odd = b"RIFF" + (0).to_bytes(4, "little") + b"WAVE" + riff[12:fmt_end] + listing + data
    principal = Principal(clinic=clinic_a, role=Role.CLINICIAN, user=clinician_a)
    session = batch_create(principal=principal, upload=ReadRecorder(odd))
    assert session.audio_bytes == len(pcm)
    with default_storage.open(session.storage_key, "rb") as fh:
        assert fh.read() == wav_bytes(pcm, 16000)
