"""The local (pocketsphinx) engine on the committed synthetic-speech fixture.

Recognition of synthetic speech is poor in general; the assertions name
only words pocketsphinx got right on this fixture (tests/fixtures/audio/README.md).
The decoder pool is shared by the module so the model loads once per worker.
"""

import asyncio
import itertools
import warnings
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from transcription.engines.base import EngineError, StreamConfig, TranscriptEvent
from transcription.engines.local import DecoderPool, LocalEngine

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "audio"
FRAME_BYTES = 3200  # 100 ms at 16 kHz


def _pcm(name: str) -> bytes:
    with wave.open(str(FIXTURES / name), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        return wav.readframes(wav.getnframes())


HELLO = _pcm("hello_en.wav")  # "the patient has a fever" · "my back hurts"


@pytest.fixture(scope="module")
def pool() -> Iterator[DecoderPool]:
    pool = DecoderPool(max_decoders=2)
    yield pool
    pool.shutdown()
    pool.executor.shutdown(wait=False)


@pytest.fixture
def engine(pool: DecoderPool) -> LocalEngine:
    return LocalEngine(pool=pool)


def _config(**overrides) -> StreamConfig:
    return StreamConfig(**{"session_id": "s1", "clinic_id": "c1", "language": "en-US", **overrides})


async def _transcribe(engine: LocalEngine, pcm: bytes, **config) -> list[TranscriptEvent]:
    rate = config.get("sample_rate", 16000)
    frame = rate * 2 // 10
    stream = await engine.open_stream(_config(**config))
    try:
        for i in range(0, len(pcm), frame):
            stream.send_audio(pcm[i : i + frame])
            await asyncio.sleep(0)
        await stream.end()
        return [event async for event in stream.events()]
    finally:
        await stream.aclose()


OFFSET_MS = 60_000


@pytest.fixture(scope="module")
def hello_events(pool: DecoderPool) -> list[TranscriptEvent]:
    """One decode of the fixture (at a session offset), shared by the tests
    that only inspect its events."""
    return asyncio.run(_transcribe(LocalEngine(pool=pool), HELLO, start_offset_ms=OFFSET_MS))


def _final_text(events: list[TranscriptEvent]) -> str:
    return " ".join(e.text for e in events if e.is_final)


def test_it_recognises_the_expected_words(hello_events):
    events = hello_events
    words = _final_text(events).split()
    for word in ("patient", "fever", "back", "hurts"):
        assert word in words
    finals = [e for e in events if e.is_final]
    assert len(finals) == 2  # two sentences, split by the endpointer at the pause
    assert all(0.0 <= f.confidence <= 1.0 for f in finals if f.confidence is not None)


def test_it_sends_partials_before_each_final_and_each_final_once(hello_events):
    events = hello_events
    finals = [e for e in events if e.is_final]
    assert len({f.segment_id for f in finals}) == len(finals)
    for final in finals:
        position = events.index(final)
        partials = [e for e in events[:position] if e.segment_id == final.segment_id]
        assert partials and not any(p.is_final for p in partials)
        revisions = [p.revision for p in partials]
        assert revisions == sorted(set(revisions)) and final.revision > revisions[-1]
        assert not [e for e in events[position + 1 :] if e.segment_id == final.segment_id]


def test_it_reports_session_relative_monotonic_times(hello_events):
    offset = OFFSET_MS
    events = hello_events
    finals = [e for e in events if e.is_final]
    for event in events:
        assert offset <= event.start_ms <= event.end_ms <= offset + len(HELLO) // 32
        assert event.segment_id == f"l-{event.start_ms}"
    for before, after in itertools.pairwise(finals):
        assert before.end_ms <= after.start_ms
    # The fixture's speech starts after 0.5 s of silence.
    assert offset + 300 <= finals[0].start_ms <= offset + 800
    for seg in {e.segment_id for e in events}:
        ends = [e.end_ms for e in events if e.segment_id == seg]
        assert ends == sorted(ends)


async def test_it_finalizes_pending_speech_on_request_and_goes_on(engine):
    stream = await engine.open_stream(_config())
    seen: list[TranscriptEvent] = []

    async def read() -> None:
        async for event in stream.events():
            seen.append(event)

    reader = asyncio.create_task(read())
    try:
        cut = 32 * 1800  # 1.8 s: in the middle of "the patient has a fever"
        stream.send_audio(HELLO[:cut])
        await stream.finalize()
        for _ in range(20):
            await asyncio.sleep(0)
        assert [e.is_final for e in seen][-1:] == [True]
        first = seen[-1]
        assert first.end_ms <= 1800
        stream.send_audio(HELLO[cut:])
        await stream.end()
        await asyncio.wait_for(reader, 30)
    finally:
        await stream.aclose()
    finals = [e for e in seen if e.is_final]
    assert finals[0] is first and len(finals) >= 2
    assert finals[1].start_ms >= first.end_ms
    assert "hurts" in _final_text(seen).split()


async def test_it_refuses_a_stream_over_the_decoder_bound(engine, pool):
    assert pool.max_decoders == 2
    held = [await engine.open_stream(_config(session_id=f"s{i}")) for i in range(2)]
    try:
        with pytest.raises(EngineError) as refused:
            await engine.open_stream(_config(session_id="s3"))
        assert refused.value.code == "engine_busy"
        assert refused.value.retryable is True
        assert "busy" in str(refused.value)
        await held.pop().aclose()
        held.append(await engine.open_stream(_config(session_id="s3")))  # a freed slot is reusable
    finally:
        for stream in held:
            await stream.aclose()
    assert pool.in_use == 0


async def test_it_rejects_languages_other_than_english(engine, pool):
    with pytest.raises(EngineError) as rejected:
        await engine.open_stream(_config(language="ja-JP"))
    assert rejected.value.code == "unsupported_language"
    assert rejected.value.retryable is False
    assert "aws" in str(rejected.value) and "Japanese" in str(rejected.value)
    assert pool.in_use == 0


async def test_it_resamples_audio_at_other_rates(engine):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    pcm_48k, _ = audioop.ratecv(HELLO, 2, 1, 16000, 48000, None)
    words = _final_text(await _transcribe(engine, pcm_48k, sample_rate=48000)).split()
    assert "patient" in words and "hurts" in words


async def test_it_keeps_the_event_loop_responsive_while_decoding(engine):
    """Decoding runs in worker processes: a ticker on this loop keeps
    ticking while a whole fixture is decoded as fast as the decoder can."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    stream = await engine.open_stream(_config())
    task = asyncio.create_task(ticker())
    try:
        for i in range(0, len(HELLO), FRAME_BYTES):  # 6 s of audio: over a second of decoding
            stream.send_audio(HELLO[i : i + FRAME_BYTES])
        ticks_before_end = ticks
        await stream.end()
        events = [event async for event in stream.events()]
    finally:
        task.cancel()
        await stream.aclose()
    assert "patient" in _final_text(events).split()
    # Blocking the loop for the decode would leave the ticker at 0-1 ticks.
    assert ticks - ticks_before_end >= 20


async def test_it_fails_retryably_and_recovers_when_a_decoder_process_dies(engine, pool):
    stream = await engine.open_stream(_config())
    try:
        stream._decoder.process.kill()  # a crashed decoder (white-box: no public way to crash it)
        stream._decoder.process.wait()
        stream.send_audio(HELLO[: FRAME_BYTES * 5])
        with pytest.raises(EngineError) as failed:
            async for _ in stream.events():
                pass
        assert failed.value.code == "engine_failed" and failed.value.retryable
    finally:
        await stream.aclose()
    assert pool.in_use == 0
    words = _final_text(await _transcribe(engine, HELLO)).split()  # a fresh process takes over
    assert "patient" in words


async def test_it_fails_retryably_when_audio_piles_up_faster_than_it_decodes(engine, pool):
    stream = await engine.open_stream(_config())
    try:
        silence = b"\0" * FRAME_BYTES
        for _ in range(310):  # 31 s at once, more than the 30 s backlog the engine accepts
            stream.send_audio(silence)
        with pytest.raises(EngineError) as failed:
            async for _ in stream.events():
                pass
        assert failed.value.code == "engine_overloaded" and failed.value.retryable
    finally:
        await stream.aclose()
    assert pool.in_use == 0


def test_it_cuts_speech_without_pauses_into_bounded_segments(monkeypatch):
    """The decoder-process logic, in-process: with a short limit, one
    sentence becomes several finals of at most that length."""
    from pocketsphinx import Decoder

    from transcription.engines import local_worker
    from transcription.engines.local import _event_from_row

    monkeypatch.setattr(local_worker, "MAX_UTTERANCE_MS", 800)
    recognizer = local_worker.Recognizer(Decoder(loglevel="FATAL"), sample_rate=16000, start_offset_ms=0)
    events = [_event_from_row(row) for row in recognizer.audio(HELLO) + recognizer.end()]
    finals = [e for e in events if e.is_final]
    assert len(finals) >= 4  # two sentences of 1.4-1.9 s each
    assert all(f.end_ms - f.start_ms <= 800 + 30 for f in finals)  # + one 30 ms endpointer frame
    assert [f.start_ms for f in finals] == sorted({f.start_ms for f in finals})
