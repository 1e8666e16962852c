"""S3 through django-storages against moto's S3 and KMS servers on
loopback: the ``{clinic_id}/{session_id}/`` layout of a real session, the
clinic's KMS key on every object, erasure, and an S3 outage mid-session."""

import asyncio
import uuid

import boto3
import pytest
from botocore.config import Config
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from moto.server import ThreadedMotoServer

from sessions.audio import wav_bytes
from sessions.models import ConsultationSession
from sessions.s3_storage import clear_kms_cache
from sessions.storage import storage_delete_prefix
from tests.servers import free_port
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

REGION = "ap-northeast-1"


class Moto:
    def __init__(self) -> None:
        self.port = free_port()
        self.server: ThreadedMotoServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.url, region_name=REGION)


@pytest.fixture
def moto(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = Moto()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(moto, settings, tmp_path):
    bucket = f"voiceai-test-{uuid.uuid4().hex[:10]}"
    moto.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    settings.AWS_STORAGE_BUCKET_NAME = bucket
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "sessions.s3_storage.ClinicKmsS3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": moto.url,
                "region_name": REGION,
                "file_overwrite": True,
                "default_acl": None,
                "querystring_auth": False,
                # Fail fast while S3 is down, so the pipeline's own retry shows.
                "client_config": Config(
                    retries={"max_attempts": 1, "mode": "standard"},
                    connect_timeout=1,
                    read_timeout=5,
                    signature_version="s3v4",
                ),
            },
        },
    }
    settings.AUDIO_FLUSH_SECONDS = 0.2
    settings.FAKE_ENGINE_MODE = "script"
    settings.FAKE_ENGINE_DELAY_MS = 0
    from transcription.engines import get_engine

    get_engine.cache_clear()
    clear_kms_cache()
    yield bucket
    clear_kms_cache()


@pytest.fixture
def kms_key(moto) -> str:
    return moto.client("kms").create_key(Description="clinic A")["KeyMetadata"]["Arn"]


def _keys(moto, bucket: str) -> list[str]:
    listing = moto.client("s3").list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


async def _stream_session(principal, frames: int, *, seed: int) -> tuple[ConsultationSession, bytes]:
    session = await adb(make_session)(principal)
    comm = communicator(session.pk, token=await atoken_for(principal, session))
    connected, _ = await comm.connect()
    assert connected
    await receive_until(comm, "Begin")
    audio = pcm(FRAME * frames, seed=seed)
    for i in range(0, len(audio), FRAME):
        await comm.send_to(bytes_data=audio[i : i + FRAME])
    await comm.send_json_to({"type": "CloseStream"})
    code, messages = await expect_close(comm, seconds=15)
    await comm.disconnect()
    assert code == 1000, messages
    return await adb(ConsultationSession.objects.get)(pk=session.pk), audio


async def test_it_stores_a_session_under_its_clinic_prefix_with_the_clinic_kms_key(
    moto, s3_bucket, kms_key, clinic_a, principal_clinician_a, principal_b
):
    clinic_a.kms_key_id = kms_key
    await adb(clinic_a.save)(update_fields=["kms_key_id"])
    session_a, audio = await _stream_session(principal_clinician_a, 25, seed=1)
    session_b, _ = await _stream_session(principal_b, 5, seed=2)

    keys = _keys(moto, s3_bucket)
    prefix_a = f"{session_a.clinic_id}/{session_a.pk}/"
    prefix_b = f"{session_b.clinic_id}/{session_b.pk}/"
    assert all(k.startswith((prefix_a, prefix_b)) for k in keys)
    # Parts are removed once the session is sealed into one WAV.
    assert {f"{prefix_a}audio.wav", f"{prefix_a}transcript.json", f"{prefix_b}audio.wav"} <= set(keys)
    s3 = moto.client("s3")
    for key in keys:
        head = s3.head_object(Bucket=s3_bucket, Key=key)
        if key.startswith(prefix_a):
            assert head["ServerSideEncryption"] == "aws:kms", key
            assert head["SSEKMSKeyId"] == kms_key, key
        else:  # clinic B has no key of its own: the bucket default, not A's key
            assert head.get("SSEKMSKeyId") is None, key
    stored = s3.get_object(Bucket=s3_bucket, Key=f"{prefix_a}audio.wav")["Body"].read()
    assert stored == wav_bytes(audio, 16000)


def test_it_erases_a_session_prefix_and_nothing_else(moto, s3_bucket, clinic_a):
    keep = f"{clinic_a.pk}/{uuid.uuid4()}/"
    gone = f"{clinic_a.pk}/{uuid.uuid4()}/"
    for prefix in (keep, gone):
        for name in ("audio.wav", "transcript.json", "parts/00000000-00003200.pcm"):
            default_storage.save(prefix + name, ContentFile(b"x" * 10))
    assert storage_delete_prefix(gone) == 3
    keys = _keys(moto, s3_bucket)
    assert keys == sorted(keep + n for n in ("audio.wav", "transcript.json", "parts/00000000-00003200.pcm"))
    assert storage_delete_prefix(gone) == 0
    with pytest.raises(ValueError):
        storage_delete_prefix("")


async def test_it_keeps_a_session_going_through_an_s3_outage_and_stores_all_audio(
    moto, s3_bucket, principal_clinician_a
):
    session = await adb(make_session)(principal_clinician_a)
    comm = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
    connected, _ = await comm.connect()
    assert connected
    await receive_until(comm, "Begin")
    audio = pcm(FRAME * 30, seed=3)
    for i in range(0, FRAME * 10, FRAME):
        await comm.send_to(bytes_data=audio[i : i + FRAME])
    await receive_until(comm, "Ack")

    moto.stop()  # S3 goes away mid-session
    for i in range(FRAME * 10, FRAME * 20, FRAME):
        await comm.send_to(bytes_data=audio[i : i + FRAME])
    warning, _ = await receive_until(comm, "Warning", seconds=10)
    assert warning["code"] == "storage_retry"
    await asyncio.sleep(0.3)
    moto.start()  # and comes back (moto keeps its state in-process)

    for i in range(FRAME * 20, len(audio), FRAME):
        await comm.send_to(bytes_data=audio[i : i + FRAME])
    await comm.send_json_to({"type": "CloseStream"})
    code, messages = await expect_close(comm, seconds=20)
    await comm.disconnect()
    assert code == 1000, messages
    assert messages[-1]["type"] == "Metadata" and messages[-1]["audio_ms"] == 3000
    stored = moto.client("s3").get_object(Bucket=s3_bucket, Key=f"{session.clinic_id}/{session.pk}/audio.wav")
    assert stored["Body"].read() == wav_bytes(audio, 16000)
