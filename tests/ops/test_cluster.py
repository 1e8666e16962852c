"""The local cluster (ops/cluster, ``make cluster``): app processes behind
HAProxy on PostgreSQL and a Redis of the test's own, streamed to by the
reference client (examples.reference_client: resumes from the last Ack with a
fresh token and takeover) through the load balancer.

- a rolling restart of every process under load: no audio lost (the stored
  WAV's sha256 is the client's), no final sent twice, all finals stored;
- ``kill -9`` of the process holding a session: it resumes elsewhere;
- Redis killed and restarted empty mid-stream: the streams carry on and
  nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from examples.reference_client import Api, Printer, Producer, UnackedAudio, capture, wav_sha256
from sessions.models import ConsultationSession, TranscriptSegment
from tests.servers import current_database_url, free_port, requires_shared_database
from tests.transcription.helpers import pcm
from transcription.live_state import live_state_key
from voiceai.db import db_async

pytestmark = [pytest.mark.slow, requires_shared_database()]

REPO_ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("voiceai_cluster", REPO_ROOT / "ops" / "cluster" / "cluster.py")
cluster_module = sys.modules.setdefault("voiceai_cluster", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(cluster_module)

FRAME = 3200
RATE = 16000
CLIENT_TIMEOUT = 90


def _haproxy() -> str:
    found = cluster_module.haproxy_binary()
    if found:
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("haproxy is required for the cluster tests (apt-get install -y haproxy; see .ci/run)")
    pytest.skip("haproxy not installed (apt-get install -y haproxy)")


class OwnRedis:
    """A redis-server of this test on a free loopback port (never the
    machine's: the test restarts it)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


@pytest.fixture
def own_redis():
    server = OwnRedis()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def cluster(transactional_db, own_redis, tmp_path, settings):
    haproxy = _haproxy()
    env = {
        "DJANGO_SETTINGS_MODULE": "voiceai.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": current_database_url(),
        "REDIS_URL": own_redis.url,
        "MEDIA_ROOT": str(tmp_path / "media"),
        "TRANSCRIPTION_ENGINE": "fake",
        "FAKE_ENGINE_MODE": "script",
        "AUDIO_FLUSH_SECONDS": "0.3",
        "SESSION_LEASE_SECONDS": "2",
        "STREAM_IDLE_TIMEOUT_SECONDS": "30",
        "DRAIN_SECONDS": "10",
        "LOG_LEVEL": "WARNING",
    }
    running = cluster_module.Cluster(env=env, processes=2, workdir=tmp_path / "cluster", check_interval_ms=500)
    running.start(haproxy=haproxy)
    yield running
    running.stop()


class RecordingProducer(Producer):
    """The reference client, also recording every final as received
    (the client itself drops a repeated one silently)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.finals_received: list[str] = []

    def _on_transcript(self, message: dict) -> None:
        if message["is_final"]:
            self.finals_received.append(message["segment_id"])
        super()._on_transcript(message)


async def _stream(url: str, api_key: str, audio: bytes, *, speed: float) -> tuple[str, RecordingProducer]:
    api = Api(url, api_key)
    session = await api.acall("POST", "/api/v1/sessions/", {"sample_rate": RATE})
    buffer = UnackedAudio()
    capturing = asyncio.create_task(capture(audio, buffer, frame_bytes=FRAME, speed=speed))
    producer = RecordingProducer(api, session, buffer, Printer(io.StringIO()), frame_bytes=FRAME)
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT):
            await producer.run()
    finally:
        capturing.cancel()
    return str(session["id"]), producer


async def _verify(session_id: str, producer: RecordingProducer, audio: bytes, *, all_finals_seen: bool) -> None:
    stored = await db_async(ConsultationSession.objects.get)(pk=session_id)
    assert stored.status == "ended"
    assert stored.audio_bytes == len(audio)
    assert stored.audio_sha256 == wav_sha256(audio, RATE)  # byte for byte, nothing lost or doubled
    rows = await db_async(list)(
        TranscriptSegment.objects.filter(session_id=session_id, is_final=True).values_list("segment_id", flat=True)
    )
    seen = producer.finals_received
    assert len(seen) == len(set(seen)), seen  # no final sent twice
    assert len(rows) == len(set(rows))
    assert set(seen) <= set(rows)  # every final a client saw is stored
    if all_finals_seen:
        assert set(seen) == set(rows)
    audio_ms = len(audio) * 1000 // (RATE * 2)
    assert producer.result.metadata == {"type": "Metadata", "audio_ms": audio_ms, "segments": len(rows)}


def _owner_index(cluster, own_redis: OwnRedis, clinic_id, session_id) -> int | None:
    owner = own_redis.client().hget(live_state_key(clinic_id, session_id), "owner") or ""
    parts = owner.split(":")
    return cluster.app_by_pid(int(parts[1])) if len(parts) == 3 and parts[1].isdigit() else None


async def test_it_survives_a_rolling_restart_under_load_without_loss_or_duplicates(cluster, api_key_a_clinician):
    audios = [pcm(FRAME * 150, seed=40 + i) for i in range(3)]  # 15 s each
    clients = [asyncio.create_task(_stream(cluster.url, api_key_a_clinician, a, speed=1.25)) for a in audios]
    await asyncio.sleep(2)
    for index in range(len(cluster.apps)):
        await asyncio.to_thread(cluster.restart, index)
    still_streaming = sum(not c.done() for c in clients)
    results = await asyncio.gather(*clients)
    assert still_streaming == len(clients), "the restarts must happen while every client streams"
    for (session_id, producer), audio in zip(results, audios, strict=True):
        await _verify(session_id, producer, audio, all_finals_seen=True)
    # Each process was drained once with streams on it: they moved (1012) and resumed.
    assert sum(p.result.reconnects for _, p in results) >= 2
    assert all(p.result.resumed_from for _, p in results if p.result.reconnects)


async def test_it_resumes_sessions_of_a_killed_process_elsewhere(cluster, own_redis, api_key_a_clinician, clinic_a):
    audios = [pcm(FRAME * 100, seed=50 + i) for i in range(2)]  # 10 s each
    clients = [asyncio.create_task(_stream(cluster.url, api_key_a_clinician, a, speed=1.25)) for a in audios]
    await asyncio.sleep(2.5)
    session = await db_async(lambda: ConsultationSession.objects.filter(clinic=clinic_a).order_by("created_at")[0])()
    index = _owner_index(cluster, own_redis, clinic_a.pk, session.pk)
    assert index is not None, "the first session has a live owner process"
    await asyncio.to_thread(cluster.kill, index)  # kill -9
    results = await asyncio.gather(*clients)
    moved = next(p for sid, p in results if sid == str(session.pk))
    assert moved.result.reconnects >= 1 and moved.result.resumed_from
    for (session_id, producer), audio in zip(results, audios, strict=True):
        # A crash may store finals it never got to send: stored ⊇ seen.
        await _verify(session_id, producer, audio, all_finals_seen=False)


async def test_it_recovers_when_redis_restarts_empty_mid_stream(cluster, own_redis, api_key_a_clinician, clinic_a):
    audios = [pcm(FRAME * 100, seed=60 + i) for i in range(2)]  # 10 s each
    clients = [asyncio.create_task(_stream(cluster.url, api_key_a_clinician, a, speed=1.25)) for a in audios]
    await asyncio.sleep(2.5)
    own_redis.kill()
    await asyncio.sleep(1.5)
    own_redis.start()  # empty: no leases, no quota slots, no channel-layer state
    sessions = await db_async(lambda: list(ConsultationSession.objects.filter(clinic=clinic_a)))()
    owners: list = []
    deadline = time.monotonic() + 10
    while not (owners and all(o is not None for o in owners)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        owners = [_owner_index(cluster, own_redis, clinic_a.pk, s.pk) for s in sessions]
    # The producers took their leases back in the new Redis (renewal re-owns a vanished state).
    logs = "".join(a.log_path.read_text(errors="replace")[-2000:] for a in cluster.apps)
    assert len(sessions) == 2 and all(o is not None for o in owners), (owners, logs)
    results = await asyncio.gather(*clients)
    for (session_id, producer), audio in zip(results, audios, strict=True):
        await _verify(session_id, producer, audio, all_finals_seen=False)
