"""No final lost across a resume or an engine restart, none sent twice.

- A client that drops while finals are pending never receives them (the
  server stores them in its flush after the drop); on resume it passes
  ``finals_received`` and gets exactly the missing ones after Begin.
- An engine that fails mid-utterance is reopened where the last final seen
  ends and re-fed the audio from there, so the utterance in progress still
  comes out as a final, once.
"""

import asyncio

import pytest

from sessions.models import TranscriptSegment
from tests.transcription.helpers import FRAME, adb, atoken_for, communicator, expect_close, make_session, pcm
from transcription.consumers import ProducerConsumer
from transcription.engines.base import EngineError
from transcription.engines.fake import FakeEngineStream
from transcription.stream_registry import ACTIVE_STREAMS

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _media(stream_settings):
    """Socket tests run with tests/transcription/conftest.py's stream settings."""


@pytest.fixture
def session_a(principal_clinician_a):
    return make_session(principal_clinician_a)


class Client:
    """One producer connection that records every JSON message it read."""

    def __init__(self, comm) -> None:
        self.comm = comm
        self.messages: list[dict] = []

    @classmethod
    async def open(cls, session, principal, query: str = "") -> "Client":
        comm = communicator(session.pk, token=await atoken_for(principal, session), query=query)
        connected, _ = await comm.connect()
        assert connected
        return cls(comm)

    async def read_until(self, predicate, seconds: float = 5.0) -> dict:
        while True:
            message = await self.comm.receive_json_from(timeout=seconds)
            self.messages.append(message)
            if predicate(message):
                return message

    async def send_audio(self, audio: bytes, start: int, end: int) -> None:
        for i in range(start, end, FRAME):
            await self.comm.send_to(bytes_data=audio[i : i + FRAME])

    async def close_stream(self) -> None:
        await self.comm.send_json_to({"type": "CloseStream"})
        code, rest = await expect_close(self.comm, seconds=10)
        self.messages += rest
        assert code == 1000 and rest[-1]["type"] == "Metadata"

    def finals(self) -> list[str]:
        return [m["segment_id"] for m in self.messages if m["type"] == "Transcript" and m["is_final"]]


def _final(segment_id: str):
    return lambda m: m["type"] == "Transcript" and m["is_final"] and m["segment_id"] == segment_id


async def _stored_ids(session) -> list[str]:
    rows = TranscriptSegment.objects.filter(session_id=session.pk).order_by("id").values_list("segment_id", flat=True)
    return await adb(list)(rows)


async def test_it_resends_the_finals_stored_after_a_drop_to_the_resuming_client(principal_clinician_a, session_a):
    audio = pcm(FRAME * 65, seed=21)  # 6.5 s
    first = await Client.open(session_a, principal_clinician_a)
    await first.read_until(lambda m: m["type"] == "Begin")
    await first.send_audio(audio, 0, FRAME * 25)
    await first.read_until(_final("fake-0"))
    await first.read_until(lambda m: m["type"] == "Ack" and m["audio_bytes_durable"] == FRAME * 25)
    (stream,) = [s for s in list(ACTIVE_STREAMS) if s.session.pk == session_a.pk]
    stream._flush_seconds = 60.0  # no timed flush from here: fake-2000 stays pending
    await first.send_audio(audio, FRAME * 25, FRAME * 45)  # 4.5 s: fake-2000 is final at 4 s
    # The engine's next partial (fake-4000 at 4.5 s) comes after fake-2000,
    # so fake-2000 now waits in the stream for a flush.
    await first.read_until(lambda m: m["type"] == "Transcript" and m["segment_id"] == "fake-4000")
    await first.comm.disconnect()  # dropped: the server's last flush stores fake-2000, sends it nowhere
    received = first.finals()
    assert received == ["fake-0"]
    assert await _stored_ids(session_a) == ["fake-0", "fake-2000"]  # stored, never received

    second = await Client.open(session_a, principal_clinician_a, query=f"takeover=1&finals_received={len(received)}")
    begin = await second.read_until(lambda m: m["type"] == "Begin")
    assert begin["resume_from_byte"] == FRAME * 45
    # Right after Begin, before anything new: the one final the client missed.
    resent = await second.comm.receive_json_from(timeout=5)
    second.messages.append(resent)
    assert resent["type"] == "Transcript" and resent["is_final"] is True
    assert (resent["segment_id"], resent["start_ms"], resent["end_ms"]) == ("fake-2000", 2000, 4000)
    assert resent["text"] == "blood pressure normal advise rest fluids and follow"
    await second.send_audio(audio, FRAME * 45, len(audio))
    await second.close_stream()

    union = received + second.finals()
    assert len(union) == len(set(union))  # never a final twice
    assert union == await _stored_ids(session_a) == ["fake-0", "fake-2000", "fake-4000", "fake-6000"]


async def test_it_resends_nothing_to_a_client_that_has_every_final_or_does_not_say(principal_clinician_a, session_a):
    first = await Client.open(session_a, principal_clinician_a)
    await first.read_until(lambda m: m["type"] == "Begin")
    await first.send_audio(pcm(FRAME * 25, seed=22), 0, FRAME * 25)
    await first.read_until(_final("fake-0"))
    await first.read_until(lambda m: m["type"] == "Ack" and m["audio_bytes_durable"] == FRAME * 25)
    await first.comm.disconnect()

    for query in ("finals_received=1", "finals_received=7", ""):  # all of them, more, not said
        client = await Client.open(session_a, principal_clinician_a, query=query)
        await client.read_until(lambda m: m["type"] == "Begin")
        await client.comm.send_json_to({"type": "KeepAlive"})
        await client.comm.send_to(bytes_data=pcm(FRAME, seed=23))
        await client.read_until(lambda m: m["type"] == "Ack")
        assert client.finals() == [], query
        await client.comm.disconnect()
        # The next client takes over once this one's flush released the lease.
        for _ in range(100):
            if not [s for s in list(ACTIVE_STREAMS) if s.session.pk == session_a.pk]:
                break
            await asyncio.sleep(0.05)

    everything = await Client.open(session_a, principal_clinician_a, query="finals_received=0")
    await everything.read_until(lambda m: m["type"] == "Begin")
    await everything.read_until(lambda m: m["type"] == "Transcript")
    assert everything.finals() == ["fake-0"]
    await everything.comm.disconnect()


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "9" * 20])
async def test_it_refuses_a_bad_finals_received_with_4400_before_using_the_token(
    principal_clinician_a, session_a, value
):
    token = await atoken_for(principal_clinician_a, session_a)
    comm = communicator(session_a.pk, token=token, query=f"finals_received={value}")
    await comm.connect()
    code, messages = await expect_close(comm)
    assert code == 4400 and messages[-1]["code"] == "bad_query"
    await comm.disconnect()
    # The token was not consumed: a corrected connect still works with it.
    comm = communicator(session_a.pk, token=token, query="finals_received=0")
    await comm.connect()
    begin = await comm.receive_json_from(timeout=5)
    assert begin["type"] == "Begin"
    await comm.disconnect()


class FailsOnceEngineStream(FakeEngineStream):
    """The scripted fake engine; the first stream of a session raises a
    retryable EngineError once the audio reaches ``fail_at_ms``, losing
    whatever it had not finalised (as an upstream disconnect would)."""

    def __init__(self, config, *, fail_at_ms: int | None) -> None:
        super().__init__(config, mode="script", delay_ms=0)
        self._fail_at_ms = fail_at_ms
        self._failed = False

    def send_audio(self, chunk: bytes) -> None:
        if self._failed:
            return
        super().send_audio(chunk)
        if self._fail_at_ms is not None and self._now_ms() >= self._fail_at_ms:
            self._failed = True
            self._out.put_nowait(EngineError("upstream dropped", code="engine_dropped", retryable=True))

    async def events(self):
        async for item in super().events():
            if isinstance(item, EngineError):
                raise item
            yield item


@pytest.fixture
def failing_engine():
    configs, fail_at = [], []

    async def opener(stream, config):
        configs.append(config)
        return FailsOnceEngineStream(config, fail_at_ms=fail_at[0] if len(configs) == 1 else None)

    previous = ProducerConsumer.engine_opener
    ProducerConsumer.engine_opener = staticmethod(opener)
    yield configs, fail_at
    ProducerConsumer.engine_opener = previous


# The engine fails inside the utterance 2000-4000 ms: at 3 s with fake-0
# stored or pending (flushes every 0.2 s), and at 2.5 s with fake-0 surely
# pending (no flush before 3 s of audio), where replaying from the last
# *stored* final would start at 0.
@pytest.mark.parametrize(("flush_seconds", "fail_at_ms"), [(0.2, 3000), (30.0, 2500)])
async def test_it_keeps_the_utterance_in_progress_when_the_engine_restarts(
    principal_clinician_a, session_a, failing_engine, settings, flush_seconds, fail_at_ms
):
    settings.AUDIO_FLUSH_SECONDS = flush_seconds
    configs, fail_at = failing_engine
    fail_at.append(fail_at_ms)
    audio = pcm(FRAME * 50, seed=24)  # 5 s
    client = await Client.open(session_a, principal_clinician_a)
    await client.read_until(lambda m: m["type"] == "Begin")
    await client.send_audio(audio, 0, FRAME * 35)
    await client.read_until(lambda m: m["type"] == "Warning" and m["code"] == "engine_restarted")
    await client.send_audio(audio, FRAME * 35, len(audio))
    await client.close_stream()

    # Reopened where the last final seen (fake-0, stored or still pending)
    # ends, with the audio from there replayed: the utterance cut by the
    # failure is a final, whole and once.
    assert [c.start_offset_ms for c in configs] == [0, 2000]
    assert client.finals() == ["fake-0", "fake-2000", "fake-4000"]
    (spanning,) = [m for m in client.messages if m["type"] == "Transcript" and m["is_final"] and m["start_ms"] == 2000]
    assert spanning["end_ms"] == 4000
    assert spanning["text"] == "blood pressure normal advise rest fluids and follow"
    assert await _stored_ids(session_a) == ["fake-0", "fake-2000", "fake-4000"]
    assert client.messages[-1] == {"type": "Metadata", "audio_ms": 5000, "segments": 3}
