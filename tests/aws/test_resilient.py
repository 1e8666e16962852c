"""The resilient wrapper over the real AWS engine and the stand-in: retry
with replay, rollover, keep-alive, finalize by rollover, and failure.
Lost audio or audio transcribed twice shows as a missing or repeated word."""

import asyncio

import pytest

from tests.aws.conftest import numbered_chunks, words
from tests.transcribe_standin import Scenario
from transcription.engines.base import EngineError, StreamConfig
from transcription.resilient import ResiliencePolicy, ResilientStream


def _config(**overrides) -> StreamConfig:
    values = {"session_id": "s-1", "clinic_id": "c-1", "language": "en-US", "sample_rate": 16000}
    values.update(overrides)
    return StreamConfig(**values)


def _stream(engine, notices, **policy) -> ResilientStream:
    policy.setdefault("backoff_base_seconds", 0.01)
    policy.setdefault("backoff_max_seconds", 0.05)
    return ResilientStream(
        _config(), opener=engine.open_stream, policy=ResiliencePolicy(**policy), on_notice=notices.append
    )


async def _collect(stream, *, limit=15):
    events = []
    async with asyncio.timeout(limit):
        async for event in stream.events():
            events.append(event)
    return events


def _final_words(events) -> list[str]:
    return " ".join(e.text for e in events if e.is_final).split()


@pytest.mark.parametrize("failure", ["drop", "LimitExceededException", "ServiceUnavailableException"])
async def test_it_retries_and_replays_unfinished_audio_after_a_retryable_failure(
    aws_engine, transcribe_standin, failure
):
    transcribe_standin.script.append(Scenario(fail_after_bytes=3200 * 8, fail_exception=failure))
    notices: list[dict] = []
    stream = _stream(aws_engine, notices)
    for chunk in numbered_chunks(20):
        stream.send_audio(chunk)
    await stream.end()
    events = await _collect(stream)
    await stream.aclose()

    assert _final_words(events) == words(20)
    assert [n["type"] for n in notices] == ["Warning"]
    assert notices[0]["code"] == "engine_reconnecting" and notices[0]["attempt"] == 1
    assert stream.upstream_streams == 2
    # The second upstream stream started at the end of the first final
    # (500 ms) and got the audio from there: nothing final was re-sent.
    second = transcribe_standin.requests[1]
    assert bytes(second.audio) == b"".join(numbered_chunks(15, first=6))
    finals = [e for e in events if e.is_final]
    assert [(f.start_ms, f.end_ms) for f in finals] == [(0, 500), (500, 1000), (1000, 1500), (1500, 2000)]
    assert finals[1].segment_id.startswith("aws-500-")


async def test_it_retries_throttled_starts_with_a_warning_each(aws_engine, transcribe_standin):
    transcribe_standin.script.extend(
        [
            Scenario(start_error=(429, "LimitExceededException")),
            Scenario(start_error=(503, "ServiceUnavailableException")),
        ]
    )
    notices: list[dict] = []
    stream = _stream(aws_engine, notices)
    for chunk in numbered_chunks(7):
        stream.send_audio(chunk)
    await stream.end()
    events = await _collect(stream)
    await stream.aclose()
    assert _final_words(events) == words(7)
    assert [n["reason"] for n in notices] == ["aws_limit_exceeded", "aws_service_unavailable"]


async def test_it_fails_without_retry_on_a_bad_request_and_keeps_earlier_finals(aws_engine, transcribe_standin):
    transcribe_standin.script.append(Scenario(fail_after_bytes=3200 * 6, fail_exception="BadRequestException"))
    notices: list[dict] = []
    stream = _stream(aws_engine, notices)
    for chunk in numbered_chunks(10):
        stream.send_audio(chunk)
    got = []
    with pytest.raises(EngineError) as caught:
        async with asyncio.timeout(10):
            async for event in stream.events():
                got.append(event)
    await stream.aclose()
    assert caught.value.code == "aws_bad_request" and caught.value.retryable is False
    assert _final_words(got) == words(5)
    assert notices == [] and len(transcribe_standin.requests) == 1


async def test_it_gives_up_after_the_retry_budget(aws_engine, transcribe_standin):
    transcribe_standin.region_scenarios["ap-northeast-1"] = Scenario(start_error=(503, "ServiceUnavailableException"))
    notices: list[dict] = []
    stream = _stream(aws_engine, notices, max_retries=2)
    stream.send_audio(numbered_chunks(1)[0])
    with pytest.raises(EngineError) as caught:
        await _collect(stream)
    await stream.aclose()
    assert caught.value.retryable is False and caught.value.code == "aws_service_unavailable"
    assert len(notices) == 2 and len(transcribe_standin.requests) == 3


async def test_it_rolls_over_before_the_stream_limit_without_losing_or_repeating_audio(aws_engine, transcribe_standin):
    notices: list[dict] = []
    stream = _stream(aws_engine, notices, max_stream_seconds=0.3)
    for chunk in numbered_chunks(30):
        stream.send_audio(chunk)
        await asyncio.sleep(0.04)
    await stream.end()
    events = await _collect(stream)
    await stream.aclose()
    assert stream.upstream_streams >= 3
    assert _final_words(events) == words(30)
    finals = [e for e in events if e.is_final]
    assert len({f.segment_id for f in finals}) == len(finals)
    assert finals[-1].end_ms == 3000
    assert notices == []


async def test_it_sends_keepalive_silence_while_paused_and_keeps_session_times(aws_engine, transcribe_standin):
    notices: list[dict] = []
    stream = _stream(aws_engine, notices, keepalive_after_seconds=0.2)
    for chunk in numbered_chunks(5):
        stream.send_audio(chunk)
    await asyncio.sleep(0.9)  # the clinician pauses
    for chunk in numbered_chunks(5, first=6):
        stream.send_audio(chunk)
    await stream.end()
    events = await _collect(stream)
    await stream.aclose()

    received = bytes(transcribe_standin.requests[0].audio)
    silence = len(received) - 10 * 3200
    assert silence >= 6400 and received.count(b"\x00" * 6400) >= 1
    assert len(transcribe_standin.requests) == 1
    finals = [e for e in events if e.is_final]
    assert [f.text for f in finals] == [" ".join(words(5)), " ".join(words(5, 6))]
    # Upstream heard the silence; the session's clock did not.
    assert [(f.start_ms, f.end_ms) for f in finals] == [(0, 500), (500, 1000)]


async def test_it_finalizes_by_rolling_over_when_the_engine_cannot_flush(aws_engine, transcribe_standin):
    notices: list[dict] = []
    stream = _stream(aws_engine, notices)
    for chunk in numbered_chunks(3):
        stream.send_audio(chunk)
    await asyncio.sleep(0.2)
    await stream.finalize()
    got = []
    async with asyncio.timeout(10):
        async for event in stream.events():
            got.append(event)
            if event.is_final:
                break
    assert got[-1].text == " ".join(words(3)) and got[-1].end_ms == 300
    for chunk in numbered_chunks(4, first=4):
        stream.send_audio(chunk)
    await stream.end()
    rest = await _collect(stream)
    await stream.aclose()
    assert _final_words(got + rest) == words(7)
    assert stream.upstream_streams == 2


async def test_it_buffers_audio_while_the_opener_waits_and_transcribes_it_later(aws_engine, transcribe_standin):
    gate = asyncio.Event()

    async def queued_opener(config):
        await gate.wait()  # e.g. waiting for an engine slot
        return await aws_engine.open_stream(config)

    stream = ResilientStream(_config(), opener=queued_opener, policy=ResiliencePolicy())
    for chunk in numbered_chunks(8):
        stream.send_audio(chunk)
    await stream.end()
    await asyncio.sleep(0.1)
    assert transcribe_standin.requests == []
    gate.set()
    events = await _collect(stream)
    await stream.aclose()
    assert _final_words(events) == words(8)


async def test_it_keeps_session_times_when_resumed_at_an_offset_and_retried(aws_engine, transcribe_standin):
    transcribe_standin.script.append(Scenario(fail_after_bytes=3200 * 7, fail_exception="drop"))
    notices: list[dict] = []
    stream = ResilientStream(
        _config(start_offset_ms=60_000),
        opener=aws_engine.open_stream,
        policy=ResiliencePolicy(backoff_base_seconds=0.01, backoff_max_seconds=0.05),
        on_notice=notices.append,
    )
    for chunk in numbered_chunks(10):
        stream.send_audio(chunk)
    await stream.end()
    events = await _collect(stream)
    await stream.aclose()
    finals = [e for e in events if e.is_final]
    assert _final_words(events) == words(10)
    assert [(f.start_ms, f.end_ms) for f in finals] == [(60_000, 60_500), (60_500, 61_000)]
    assert finals[1].segment_id.startswith("aws-60500-")
    assert len(notices) == 1
