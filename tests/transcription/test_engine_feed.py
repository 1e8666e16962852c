"""EngineFeed on its own: the engine opens where the last final seen ends and
is fed the audio from there; a retryable failure reopens it the same way, a
permanent one (or too many) ends the stream."""

import asyncio
from types import SimpleNamespace

from transcription.audio_ledger import AudioLedger
from transcription.engine_feed import MAX_ENGINE_RESTARTS, EngineFeed
from transcription.engines.base import EngineError, EngineStream

RATE = 16000
BYTES_PER_MS = 32


class RecordingStream(EngineStream):
    def __init__(self, config, fail: EngineError | None) -> None:
        self.config = config
        self.audio = bytearray()
        self.fail = fail

    def send_audio(self, chunk: bytes) -> None:
        self.audio += chunk

    async def finalize(self) -> None:
        pass

    async def end(self) -> None:
        pass

    async def events(self):
        if self.fail is not None:
            raise self.fail
        return
        yield

    async def aclose(self) -> None:
        pass


def _feed(*, last_final_end_ms: int, failures: list[EngineError]):
    opened: list[RecordingStream] = []
    outcome = SimpleNamespace(failure=None, restarts=0)

    async def opener(host, config):
        stream = RecordingStream(config, failures.pop(0) if failures else None)
        opened.append(stream)
        return stream

    async def on_restart(exc):
        outcome.restarts += 1

    host = SimpleNamespace(session=SimpleNamespace(pk="s", clinic_id="c", sample_rate=RATE), engine_name="fake")
    ledger = AudioLedger(sample_rate=RATE)
    feed = EngineFeed(
        host=host,
        opener=opener,
        ledger=ledger,
        flush_lock=asyncio.Lock(),
        language="en-US",
        vocabulary_name="",
        last_final_end_ms=lambda: last_final_end_ms,
        on_event=lambda event: asyncio.sleep(0),
        on_failure=lambda error: setattr(outcome, "failure", error),
        on_restart=on_restart,
    )
    return feed, ledger, opened, outcome


async def test_it_opens_at_the_last_final_and_replays_the_buffered_audio_from_there():
    feed, ledger, opened, _ = _feed(last_final_end_ms=1000, failures=[])
    audio = bytes(range(256)) * 375  # 3 s
    for i in range(0, len(audio), 3200):
        ledger.accept(audio[i : i + 3200])
    await feed.open_replaying()
    (engine,) = opened
    assert engine.config.start_offset_ms == 1000
    assert bytes(engine.audio) == audio[1000 * BYTES_PER_MS :]
    feed.send(b"\x00" * 640)  # later frames go straight on
    assert len(engine.audio) == len(audio) - 1000 * BYTES_PER_MS + 640


async def test_it_restarts_after_a_retryable_failure_and_gives_up_after_a_few():
    retryable = [
        EngineError("throttled", code="engine_throttled", retryable=True) for _ in range(MAX_ENGINE_RESTARTS + 1)
    ]
    feed, ledger, opened, outcome = _feed(last_final_end_ms=0, failures=retryable)
    ledger.accept(b"\x01" * 3200)
    await feed.open_replaying()
    await feed.pump()
    assert outcome.restarts == MAX_ENGINE_RESTARTS and len(opened) == MAX_ENGINE_RESTARTS + 1
    assert all(bytes(e.audio) == b"\x01" * 3200 for e in opened)  # each reopen replays the audio
    assert outcome.failure is not None and outcome.failure.code == "engine_throttled" and outcome.failure.retryable


async def test_it_ends_the_stream_at_once_on_a_permanent_failure():
    feed, _, opened, outcome = _feed(last_final_end_ms=0, failures=[EngineError("bad language", code="bad_request")])
    await feed.open_replaying()
    await feed.pump()
    assert len(opened) == 1 and outcome.restarts == 0
    assert (
        outcome.failure.code == "bad_request" and outcome.failure.close_code == 1011 and not outcome.failure.retryable
    )
