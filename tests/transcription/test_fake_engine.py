"""The fake engine: deterministic script, resume-stable ids, echo mode."""

from transcription.engines.base import StreamConfig
from transcription.engines.fake import FakeEngine

RATE = 16000
SECOND = RATE * 2


async def _run(engine: FakeEngine, chunks: list[bytes], *, start_offset_ms: int = 0, finalize_after: int | None = None):
    stream = await engine.open_stream(
        StreamConfig(session_id="s", clinic_id="c", language="en-US", start_offset_ms=start_offset_ms)
    )
    for i, chunk in enumerate(chunks):
        stream.send_audio(chunk)
        if finalize_after == i:
            await stream.finalize()
    await stream.end()
    return [event async for event in stream.events()]


async def test_it_emits_partials_then_one_final_per_segment():
    events = await _run(FakeEngine(mode="script", delay_ms=0), [b"\0" * 3200] * 50)  # 5 s
    finals = [e for e in events if e.is_final]
    assert [f.segment_id for f in finals] == ["fake-0", "fake-2000", "fake-4000"]
    assert [(f.start_ms, f.end_ms) for f in finals] == [(0, 2000), (2000, 4000), (4000, 5000)]
    partials = [e for e in events if not e.is_final and e.segment_id == "fake-0"]
    assert [p.revision for p in partials] == [0, 1, 2]
    assert all(f.text for f in finals)


async def test_it_produces_the_same_finals_when_restarted_at_a_segment_boundary():
    engine = FakeEngine(mode="script", delay_ms=0)
    whole = [e for e in await _run(engine, [b"\0" * 3200] * 60) if e.is_final]
    tail = [e for e in await _run(engine, [b"\0" * 3200] * 40, start_offset_ms=2000) if e.is_final]
    assert [(e.segment_id, e.text) for e in whole[1:]] == [(e.segment_id, e.text) for e in tail]


async def test_it_finalizes_pending_audio_on_request():
    events = await _run(FakeEngine(mode="script", delay_ms=0), [b"\0" * 3200] * 10, finalize_after=6)
    finals = [(e.segment_id, e.start_ms, e.end_ms) for e in events if e.is_final]
    assert finals == [("fake-0", 0, 700), ("fake-700", 700, 1000)]


async def test_it_echoes_the_session_relative_byte_offset():
    events = await _run(FakeEngine(mode="echo", delay_ms=0), [b"\0" * 3200] * 3, start_offset_ms=1000)
    assert [e.text for e in events] == [str(SECOND + 3200), str(SECOND + 6400), str(SECOND + 9600)]
    assert not any(e.is_final for e in events)


async def test_it_ends_an_echo_segment_with_a_final_at_each_boundary_of_session_time():
    engine = FakeEngine(mode="echo", delay_ms=0, echo_final_ms=300)
    events = await _run(engine, [b"\0" * 3200] * 7)  # 700 ms in 100 ms frames
    finals = [(e.segment_id, e.start_ms, e.end_ms, e.text) for e in events if e.is_final]
    assert finals == [("echo-0", 0, 300, str(3 * 3200)), ("echo-300", 300, 600, str(6 * 3200))]
    # Every frame still gets its partial, the final right after it.
    assert [e.text for e in events if not e.is_final] == [str(k * 3200) for k in range(1, 8)]
    assert [e.is_final for e in events][2:4] == [False, True]


async def test_it_ends_echo_segments_where_a_continuous_stream_would_after_a_resume():
    engine = FakeEngine(mode="echo", delay_ms=0, echo_final_ms=300)
    whole = [e for e in await _run(engine, [b"\0" * 3200] * 12) if e.is_final]
    tail = [e for e in await _run(engine, [b"\0" * 3200] * 9, start_offset_ms=300) if e.is_final]
    assert [(e.segment_id, e.text) for e in whole[1:]] == [(e.segment_id, e.text) for e in tail]


async def test_it_delays_events_when_configured():
    events = await _run(FakeEngine(mode="script", delay_ms=20), [b"\0" * 3200] * 25)
    assert [e.segment_id for e in events if e.is_final] == ["fake-0", "fake-2000"]
