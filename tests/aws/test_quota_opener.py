"""The quota opener between the resilient stream and the AWS engine:
a session over the limit is told its queue position, its audio waits and
is transcribed once a slot frees; a throttling region fails over."""

import asyncio

from prometheus_client import REGISTRY

from tests.aws.conftest import numbered_chunks, wait_until, words
from tests.transcribe_standin import Scenario
from transcription.engine_leases import QuotaOpener
from transcription.engine_quota import LocalEngineQuota, QuotaLimits
from transcription.engines.base import StreamConfig
from transcription.resilient import ResiliencePolicy, ResilientStream


def _session(engine, quota, name, notices, clinic="c-1"):
    opener = QuotaOpener(engine, quota, clinic_id=clinic, on_notice=notices.append)
    config = StreamConfig(session_id=name, clinic_id=clinic, language="en-US")
    policy = ResiliencePolicy(backoff_base_seconds=0.01, backoff_max_seconds=0.05)
    return ResilientStream(config, opener=opener, policy=policy, on_notice=notices.append), opener


def _two_regions() -> LocalEngineQuota:
    """Room in both regions; a region that fails stays marked down."""
    return LocalEngineQuota(
        QuotaLimits(
            regions=("ap-northeast-1", "us-west-2"),
            streams_per_region=5,
            starts_per_second=25,
            poll_seconds=0.02,
            region_down_seconds=30,
        )
    )


async def _finals(stream):
    words_seen = []
    async with asyncio.timeout(15):
        async for event in stream.events():
            if event.is_final:
                words_seen.extend(event.text.split())
    return words_seen


async def test_it_queues_a_session_over_the_limit_and_transcribes_its_buffered_audio(aws_engine, transcribe_standin):
    quota = LocalEngineQuota(
        QuotaLimits(regions=("ap-northeast-1",), streams_per_region=1, starts_per_second=25, poll_seconds=0.02)
    )
    first_notices, second_notices = [], []
    first, _ = _session(aws_engine, quota, "s1", first_notices)
    await asyncio.sleep(0.2)
    second, _ = _session(aws_engine, quota, "s2", second_notices)
    for chunk in numbered_chunks(6):
        second.send_audio(chunk)
    await second.end()
    await wait_until(lambda: second_notices)
    assert second_notices == [{"type": "Queued", "position": 1}]
    assert len(transcribe_standin.requests) == 1  # only the first session is upstream

    region_streams = {"region": "ap-northeast-1"}
    held = REGISTRY.get_sample_value("voiceai_engine_region_streams", region_streams)
    for chunk in numbered_chunks(5, first=100):
        first.send_audio(chunk)
    await first.end()
    assert await _finals(first) == words(5, 100)
    await first.aclose()  # frees the slot
    # The per-region gauge (CloudWatch's EngineStreamsActive) follows the lease.
    assert REGISTRY.get_sample_value("voiceai_engine_region_streams", region_streams) == held - 1
    assert await _finals(second) == words(6)
    await second.aclose()
    assert first_notices == []
    assert await quota.usage() == {"ap-northeast-1": 0}


async def test_it_fails_over_to_the_next_region_when_one_throttles(aws_engine, transcribe_standin):
    transcribe_standin.region_scenarios["ap-northeast-1"] = Scenario(start_error=(429, "LimitExceededException"))
    quota = _two_regions()
    notices = []
    stream, opener = _session(aws_engine, quota, "s1", notices)
    for chunk in numbered_chunks(5):
        stream.send_audio(chunk)
    await stream.end()
    assert await _finals(stream) == words(5)
    await stream.aclose()
    assert transcribe_standin.regions_hit() == ["ap-northeast-1", "us-west-2"]
    assert opener.regions_used == ["us-west-2"]
    assert [n["reason"] for n in notices if n["type"] == "Warning"] == ["aws_limit_exceeded"]
    assert await quota.usage() == {"ap-northeast-1": 0, "us-west-2": 0}


async def test_it_fails_over_when_a_region_fails_mid_stream(aws_engine, transcribe_standin):
    transcribe_standin.region_scenarios["ap-northeast-1"] = Scenario(
        fail_after_bytes=3200 * 7, fail_exception="ServiceUnavailableException"
    )
    quota = _two_regions()
    notices = []
    stream, opener = _session(aws_engine, quota, "s1", notices)
    for chunk in numbered_chunks(12):
        stream.send_audio(chunk)
    await stream.end()
    assert await _finals(stream) == words(12)
    await stream.aclose()
    assert opener.regions_used == ["ap-northeast-1", "us-west-2"]
