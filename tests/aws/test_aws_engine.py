"""The real amazon-transcribe SDK against the local stand-in: result
mapping, request headers, and every error path becoming an EngineError with
the right ``retryable``."""

import asyncio

import pytest

from tests.aws.conftest import numbered_chunks, words
from tests.transcribe_standin import Scenario
from transcription.engines.aws import AwsTranscribeEngine
from transcription.engines.base import EngineError, StreamConfig


def _config(**overrides) -> StreamConfig:
    values = {"session_id": "s-1", "clinic_id": "c-1", "language": "en-US", "sample_rate": 16000}
    values.update(overrides)
    return StreamConfig(**values)


async def _run(stream, chunks, *, end=True):
    for chunk in chunks:
        stream.send_audio(chunk)
    if end:
        await stream.end()
    events = []
    async with asyncio.timeout(10):
        async for event in stream.events():
            events.append(event)
    return events


async def test_it_maps_partials_finals_revisions_and_session_times(aws_engine, transcribe_standin):
    config = _config(
        language="ja-JP",
        vocabulary_name="clinic-terms",
        show_speaker_labels=True,
        start_offset_ms=60_000,
        extra={"region": "us-west-2"},
    )
    stream = await aws_engine.open_stream(config)
    events = await _run(stream, numbered_chunks(12))
    await stream.aclose()

    finals = [e for e in events if e.is_final]
    assert [f.text for f in finals] == [" ".join(words(5)), " ".join(words(5, 6)), " ".join(words(2, 11))]
    assert [(f.start_ms, f.end_ms) for f in finals] == [(60_000, 60_500), (60_500, 61_000), (61_000, 61_200)]
    assert len({f.segment_id for f in finals}) == 3
    assert all(f.segment_id.startswith("aws-60000-") for f in finals)
    first = [e for e in events if e.segment_id == finals[0].segment_id]
    assert [(e.revision, e.is_final) for e in first] == [(0, False), (1, False), (2, False), (3, False), (4, True)]
    assert finals[0].speaker == "spk_0" and finals[0].confidence == pytest.approx(0.9)
    assert first[0].confidence is None

    request = transcribe_standin.requests[0]
    assert request.region == "us-west-2" and request.path == "/stream-transcription"
    assert request.headers["x-amzn-transcribe-language-code"] == "ja-JP"
    assert request.headers["x-amzn-transcribe-sample-rate"] == "16000"
    assert request.headers["x-amzn-transcribe-media-encoding"] == "pcm"
    assert request.headers["x-amzn-transcribe-vocabulary-name"] == "clinic-terms"
    assert request.headers["x-amzn-transcribe-show-speaker-label"].lower() == "true"
    assert request.headers["x-amzn-transcribe-enable-partial-results-stabilization"].lower() == "true"
    assert request.ended_by_client
    assert bytes(request.audio) == b"".join(numbered_chunks(12))


async def test_it_uses_the_first_region_and_splits_large_chunks(aws_engine, transcribe_standin):
    stream = await aws_engine.open_stream(_config())
    big = b"".join(numbered_chunks(20))  # 64 kB: over the SDK's 32 kB event cap
    events = await _run(stream, [big])
    await stream.aclose()
    assert transcribe_standin.regions_hit() == ["ap-northeast-1"]
    assert bytes(transcribe_standin.requests[0].audio) == big
    assert " ".join(e.text for e in events if e.is_final) == " ".join(words(20))


@pytest.mark.parametrize(
    ("status", "error_type", "code", "retryable"),
    [
        (429, "LimitExceededException", "aws_limit_exceeded", True),
        (503, "ServiceUnavailableException", "aws_service_unavailable", True),
        (500, "InternalFailureException", "aws_internal_failure", True),
        (400, "BadRequestException", "aws_bad_request", False),
        (409, "ConflictException", "aws_conflict", False),
    ],
)
async def test_it_translates_start_errors(aws_engine, transcribe_standin, status, error_type, code, retryable):
    transcribe_standin.script.append(Scenario(start_error=(status, error_type)))
    with pytest.raises(EngineError) as caught:
        await aws_engine.open_stream(_config())
    assert (caught.value.code, caught.value.retryable) == (code, retryable)


@pytest.mark.parametrize(
    ("exception", "code", "retryable"),
    [
        ("LimitExceededException", "aws_limit_exceeded", True),
        ("ServiceUnavailableException", "aws_service_unavailable", True),
        ("BadRequestException", "aws_bad_request", False),
    ],
)
async def test_it_raises_mid_stream_exceptions_after_the_results_so_far(
    aws_engine, transcribe_standin, exception, code, retryable
):
    transcribe_standin.script.append(Scenario(fail_after_bytes=3200 * 7, fail_exception=exception))
    stream = await aws_engine.open_stream(_config())
    got = []
    with pytest.raises(EngineError) as caught:
        for chunk in numbered_chunks(10):
            stream.send_audio(chunk)
        async with asyncio.timeout(10):
            async for event in stream.events():
                got.append(event)
    await stream.aclose()
    assert (caught.value.code, caught.value.retryable) == (code, retryable)
    assert [e.text for e in got if e.is_final] == [" ".join(words(5))]


async def test_it_reports_a_dropped_connection_as_retryable(aws_engine, transcribe_standin):
    transcribe_standin.script.append(Scenario(fail_after_bytes=3200 * 3, fail_exception="drop"))
    stream = await aws_engine.open_stream(_config())
    with pytest.raises(EngineError) as caught:
        await _run(stream, numbered_chunks(6), end=False)
    await stream.aclose()
    assert caught.value.retryable is True
    assert caught.value.code in {"aws_connection_closed", "aws_connection"}


async def test_it_waits_for_a_slow_server(aws_engine, transcribe_standin):
    transcribe_standin.script.append(Scenario(headers_delay=0.5, result_delay=0.05))
    stream = await aws_engine.open_stream(_config())
    events = await _run(stream, numbered_chunks(5))
    await stream.aclose()
    assert [e.text for e in events if e.is_final] == [" ".join(words(5))]


async def test_it_times_out_a_server_that_never_answers_as_retryable(aws_engine, transcribe_standin):
    aws_engine.open_timeout = 0.3
    transcribe_standin.script.append(Scenario(headers_delay=3))
    with pytest.raises(EngineError) as caught:
        await aws_engine.open_stream(_config())
    assert caught.value.retryable is True and caught.value.code == "aws_connection"


async def test_it_reports_an_unreachable_endpoint_as_retryable(standin_cert, unused_tcp_port):
    engine = AwsTranscribeEngine(
        regions=["ap-northeast-1"],
        endpoint_url=f"https://127.0.0.1:{unused_tcp_port}",
        ca_file=standin_cert[0],
        credentials=("AKID", "secret"),
        open_timeout=3,
    )
    with pytest.raises(EngineError) as caught:
        await engine.open_stream(_config())
    assert caught.value.retryable is True and caught.value.code == "aws_connection"
