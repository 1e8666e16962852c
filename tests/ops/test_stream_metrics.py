"""The pipeline's metrics in-process: the per-stream meter (audio seconds,
sampled frame-to-transcript latency, live sessions), storage errors and the
durable-ack lag when storage fails under a live socket, and the engine
queue and stream counters of the quota (the AWS path)."""

import asyncio

import pytest
from prometheus_client import REGISTRY

from sessions import audio_store
from tests.transcription.helpers import FRAME, communicator, expect_close, make_session, pcm, receive_until, token_for
from transcription import stream_metrics
from transcription.engine_leases import LeasedStream, QuotaOpener
from transcription.engine_quota import LocalEngineQuota, limits_from_settings
from transcription.engines.base import TranscriptEvent
from transcription.engines.fake import FakeEngine
from transcription.stream_registry import ACTIVE_STREAMS
from voiceai.db import db_async

adb = db_async


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _event(end_ms: int) -> TranscriptEvent:
    return TranscriptEvent(segment_id="s", revision=0, is_final=False, start_ms=0, end_ms=end_ms, text="x")


def test_it_meters_audio_latency_samples_and_live_sessions_per_stream():
    clock = [100.0]
    meter = stream_metrics.StreamMeter(clinic_id="c-metrics", sample_rate=16000, time=lambda: clock[0])
    audio, count = _value("voiceai_audio_seconds_total"), _value("voiceai_frame_to_transcript_seconds_count")
    meter.started(received=0)
    assert _value("voiceai_live_sessions", clinic="c-metrics") == 1
    meter.acked(received=FRAME * 10, last_frame_at=100.0)  # 1 s received; sample armed at offset 32000
    assert _value("voiceai_audio_seconds_total") - audio == pytest.approx(1.0)
    clock[0] = 100.25
    meter.transcript(_event(end_ms=500))  # does not reach the sampled offset
    assert _value("voiceai_frame_to_transcript_seconds_count") == count
    meter.transcript(_event(end_ms=1000))  # covers it: one observation of 0.25 s
    assert _value("voiceai_frame_to_transcript_seconds_count") == count + 1
    meter.transcript(_event(end_ms=1500))  # nothing armed until the next Ack
    assert _value("voiceai_frame_to_transcript_seconds_count") == count + 1
    meter.stopped(received=FRAME * 15)  # the last half second is counted at the end
    meter.stopped(received=FRAME * 15)  # idempotent
    assert _value("voiceai_audio_seconds_total") - audio == pytest.approx(1.5)
    assert _value("voiceai_live_sessions", clinic="c-metrics") == 0


async def test_it_counts_storage_errors_and_shows_the_ack_lag_when_storage_fails(
    transactional_db, principal_clinician_a, tmp_media, monkeypatch, settings
):
    settings.AUDIO_FLUSH_SECONDS = 0.2
    failures = _value("voiceai_storage_errors_total", operation="flush")
    session = await adb(make_session)(principal_clinician_a)
    comm = communicator(session.pk, token=await adb(token_for)(principal_clinician_a, session))
    await comm.connect()
    await receive_until(comm, "Begin")

    def broken(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(audio_store, "part_write", broken)
    await comm.send_to(bytes_data=pcm(FRAME, seed=1))
    lags = []
    for _ in range(20):
        await asyncio.sleep(0.1)
        lags.append(stream_metrics.durable_ack_lag_seconds())
    code, messages = await expect_close(comm, seconds=15)
    assert code == 1011 and messages[-1]["code"] == "storage_unavailable"
    # Five attempts while streaming, one more while closing: each counted.
    assert _value("voiceai_storage_errors_total", operation="flush") - failures >= 5
    assert max(lags) > 0.5  # the buffered frame waited while storage failed
    assert not [s for s in ACTIVE_STREAMS if s.session.pk == session.pk]


async def test_it_counts_queued_sessions_and_upstream_streams_of_the_quota():
    quota = LocalEngineQuota(limits_from_settings(regions=("r1",), streams_per_region=1, poll_seconds=0.02))
    opener = QuotaOpener(FakeEngine(mode="script", delay_ms=0), quota, clinic_id="c1")
    from transcription.engines.base import StreamConfig

    config = StreamConfig(session_id="s1", clinic_id="c1", language="en-US", sample_rate=16000)
    starts, queued, open_before = (
        _value("voiceai_engine_stream_starts_total", engine="fake"),
        _value("voiceai_engine_queue_length"),
        LeasedStream.open_streams,
    )
    first = await opener(config)
    assert LeasedStream.open_streams == open_before + 1
    waiting = asyncio.ensure_future(opener(config))
    for _ in range(50):
        await asyncio.sleep(0.02)
        if _value("voiceai_engine_queue_length") == queued + 1:
            break
    assert _value("voiceai_engine_queue_length") == queued + 1
    await first.aclose()
    second = await asyncio.wait_for(waiting, 5)
    assert _value("voiceai_engine_queue_length") == queued
    assert _value("voiceai_engine_stream_starts_total", engine="fake") - starts == 2
    await second.aclose()
    await second.aclose()  # counted down once
    assert LeasedStream.open_streams == open_before
