"""The runtime side of operating VoiceAI, against real server processes
started through the production launcher (``python -m voiceai.ops.serve``):

- /metrics after (and during) a short stream;
- JSON log lines carry the request, clinic and session ids, and never the
  transcript, the patient reference, the API key or the stream token;
- SIGTERM drains: a final Ack covering everything received, close 1012,
  resume on another process byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sessions.audio import wav_bytes
from sessions.models import ConsultationSession, TranscriptSegment
from tests.ops.streaming import finals, read_until, scrape, value
from tests.servers import requires_shared_database
from tests.transcription.helpers import FRAME, make_session, pcm, token_for
from voiceai.db import db_async

pytestmark = [pytest.mark.slow, requires_shared_database()]

adb = db_async
SERVE = "serve"  # tests.servers launcher: python -m voiceai.ops.serve


def _stream_url(server, session_id, token: str, kind: str = "stream") -> str:
    return f"{server.ws_url}/ws/v1/sessions/{session_id}/{kind}?token={token}"


async def test_it_exposes_stream_metrics_on_a_real_process(transactional_db, server_factory, principal_clinician_a):
    server = server_factory(
        env={"FAKE_ENGINE_MODE": "script", "AUDIO_FLUSH_SECONDS": "0.2", "REDIS_URL": ""}, launcher=SERVE
    )
    session = await adb(make_session)(principal_clinician_a)
    clinic = str(session.clinic_id)
    audio = pcm(FRAME * 30, seed=3)  # 3 s
    seen: list[dict] = []
    async with connect(_stream_url(server, session.pk, await adb(token_for)(principal_clinician_a, session))) as ws:
        await read_until(ws, "Begin", seen)
        for i in range(0, FRAME * 15, FRAME):
            await ws.send(audio[i : i + FRAME])
        await read_until(ws, "Ack", seen, audio_bytes_durable=FRAME * 15)
        during = await asyncio.to_thread(scrape, server.url)
        for i in range(FRAME * 15, len(audio), FRAME):
            await ws.send(audio[i : i + FRAME])
        await ws.send(json.dumps({"type": "CloseStream"}))
        await read_until(ws, "Metadata", seen)
    after = await asyncio.to_thread(scrape, server.url)

    assert value(during, "voiceai_live_sessions", clinic=clinic) == 1
    assert value(during, "voiceai_ws_connections", kind="producer") == 1
    assert value(during, "voiceai_engine_streams_active") == 1
    assert 0 <= value(during, "voiceai_durable_ack_lag_seconds") < 60

    assert value(after, "voiceai_live_sessions", clinic=clinic) == 0
    assert value(after, "voiceai_ws_connections", kind="producer") == 0
    assert value(after, "voiceai_engine_streams_active") == 0
    assert value(after, "voiceai_durable_ack_lag_seconds") == 0
    assert value(after, "voiceai_audio_seconds_total") == pytest.approx(3.0)
    assert value(after, "voiceai_engine_stream_starts_total", engine="fake") == 1
    assert value(after, "voiceai_ws_closes_total", code="1000") == 1
    # Sampled at most once per Ack; the first sample is armed by the first Ack.
    assert value(after, "voiceai_frame_to_transcript_seconds_count") >= 1
    assert value(after, "voiceai_frame_to_transcript_seconds_sum") >= 0
    assert value(after, "voiceai_engine_stream_quota") == 25
    assert value(after, "voiceai_http_requests_total", status_class="2xx") >= 1
    # The launcher watches its event loop from the start (20 ticks a second).
    assert value(after, "voiceai_event_loop_lag_seconds_count") > value(during, "voiceai_event_loop_lag_seconds_count")
    assert finals(seen)  # the stream really produced transcripts


def _post(url: str, api_key: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Authorization": f"Api-Key {api_key}", "Content-Type": "application/json", "X-Request-Id": "http-1"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def test_it_logs_json_lines_with_ids_and_no_secrets_or_text(
    transactional_db, server_factory, api_key_a_clinician, clinic_a
):
    server = server_factory(
        env={"FAKE_ENGINE_MODE": "script", "AUDIO_FLUSH_SECONDS": "0.2", "LOG_LEVEL": "DEBUG"}, launcher=SERVE
    )
    # The fake engine's script says "patient reports mild headache since monday ...".
    phrase_ref = "Yamada Taro headache since monday"
    created = await asyncio.to_thread(
        _post, f"{server.url}/api/v1/sessions/", api_key_a_clinician, {"external_ref": phrase_ref}
    )
    session_id, token = created["id"], created["stream_token"]
    audio = pcm(FRAME * 50, seed=4)  # 5 s: finals at 2 s and 4 s
    seen: list[dict] = []
    async with connect(f"{created['stream_url']}?token={token}", additional_headers={"X-Request-Id": "ws-ops-1"}) as ws:
        await read_until(ws, "Begin", seen)
        for i in range(0, len(audio), FRAME):
            await ws.send(audio[i : i + FRAME])
        await ws.send(json.dumps({"type": "CloseStream"}))
        await read_until(ws, "Metadata", seen)
    texts = [m["text"] for m in seen if m["type"] == "Transcript"]
    assert any("mild headache" in t for t in texts)
    await asyncio.sleep(0.5)  # the last lines reach the log file
    lines = [line for line in server.output().splitlines() if line.strip()]
    assert lines

    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line[:200]}")
    lowered = server.output().lower()
    for secret in [phrase_ref, "mild headache", "since monday", api_key_a_clinician, token, *texts]:
        assert secret.lower() not in lowered, f"{secret[:30]!r} appears in the server log"

    ours = [r for r in records if r.get("session_id") == session_id]
    events = {r["event"] for r in ours}
    assert {"stream_started", "stream_stopped"} <= events, events
    for record in ours:
        if record["logger"] == "uvicorn.error":
            # The handshake line precedes authorization: no clinic yet. If a
            # server implementation logs the path, its query is redacted
            # (voiceai/logging.py; the secrets check above covers the rest).
            assert "token=" not in record["event"] and record.get("request_id") == "ws-ops-1", record
            continue
        assert record.get("clinic_id") == str(clinic_a.pk), record
        # The REST call's lines carry its request id; the socket's its own.
        assert record.get("request_id") in ("http-1", "ws-ops-1"), record
        if record["event"].startswith("stream_"):
            assert record["request_id"] == "ws-ops-1", record


async def test_it_drains_on_sigterm_acks_everything_then_closes_1012_and_resumes_elsewhere(
    transactional_db, server_factory, principal_clinician_a
):
    # Echo mode: each frame yields a partial whose text is the byte offset
    # received so far, so the test knows what the server holds. Flushes are
    # rare, so the drain itself has to store and acknowledge it.
    env = {"FAKE_ENGINE_MODE": "echo", "AUDIO_FLUSH_SECONDS": "30", "DRAIN_SECONDS": "10"}
    a, b = server_factory.many(2, env=env, launcher=SERVE)
    session = await adb(make_session)(principal_clinician_a)
    audio = pcm(FRAME * 40, seed=5)
    sent = FRAME * 25
    first: list[dict] = []
    async with connect(_stream_url(a, session.pk, await adb(token_for)(principal_clinician_a, session))) as ws:
        await read_until(ws, "Begin", first)
        for i in range(0, sent, FRAME):
            await ws.send(audio[i : i + FRAME])
        await read_until(ws, "Transcript", first, text=str(sent))
        assert all(m.get("audio_bytes_durable", 0) == 0 for m in first if m["type"] == "Ack")
        a.proc.terminate()  # SIGTERM
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                first.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    acks = [m["audio_bytes_durable"] for m in first if m["type"] == "Ack"]
    assert acks and acks[-1] == sent
    assert first[-1]["type"] == "Error" and first[-1]["code"] == "server_going_away" and first[-1]["retryable"]
    assert await asyncio.to_thread(a.proc.wait, 30) is not None  # the process exits after its drain

    second: list[dict] = []
    async with connect(_stream_url(b, session.pk, await adb(token_for)(principal_clinician_a, session))) as ws:
        begin = await read_until(ws, "Begin", second)
        assert begin["resume_from_byte"] == sent
        for i in range(sent, len(audio), FRAME):
            await ws.send(audio[i : i + FRAME])
        await ws.send(json.dumps({"type": "CloseStream"}))
        metadata = await read_until(ws, "Metadata", second, seconds=30)
    stored = await adb(ConsultationSession.objects.get)(pk=session.pk)
    assert (server_factory.media_root / stored.storage_key).read_bytes() == wav_bytes(audio, 16000)
    assert metadata["audio_ms"] == 4000
    assert await adb(TranscriptSegment.objects.filter(session=stored, is_final=True).count)() == 0  # echo: partials
