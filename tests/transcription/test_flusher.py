"""FinalsBook and Flusher on their own: finals are stored before anyone is
told, told once, in order, and the stream remembers a bounded set of them."""

import asyncio

import pytest

from sessions import audio_store
from tests.transcription.helpers import adb, make_session
from transcription.audio_ledger import AudioLedger
from transcription.engine_feed import MAX_REPLAY_MS
from transcription.engines.base import TranscriptEvent
from transcription.flusher import FinalsBook, Flusher
from transcription.stream_registry import StreamCounters

pytestmark = pytest.mark.django_db(transaction=True)


def _final(n: int, *, start: int | None = None) -> TranscriptEvent:
    start = n * 1000 if start is None else start
    return TranscriptEvent(
        segment_id=f"seg-{n}", revision=1, is_final=True, start_ms=start, end_ms=start + 900, text=f"words {n}"
    )


def test_it_takes_each_final_once_whether_pending_or_stored():
    book = FinalsBook(stored={"seg-0": 900}, segments=1, last_end_ms=900)
    assert not book.add(_final(0))
    assert book.add(_final(1)) and not book.add(_final(1))
    book.stored(book.pending[:])
    assert not book.add(_final(1)) and book.segments == 2 and book.last_end_ms == 1900


def test_it_remembers_only_the_finals_a_replay_could_produce_again():
    book = FinalsBook()
    for n in range(2000):  # a long consultation: ~2 hours of finals
        book.add(_final(n))
        book.stored(book.pending[:])
    assert book.segments == 2000
    # A replay restarts at the last final seen, at most MAX_REPLAY_MS back.
    assert book.remembered <= 300
    assert not book.add(_final(1999)) and not book.add(_final(2000 - MAX_REPLAY_MS // 1000))


async def test_it_stores_audio_and_finals_before_it_tells_the_client_then_acks(principal_clinician_a, stream_settings):
    session = await adb(make_session)(principal_clinician_a)
    loop = asyncio.get_running_loop()
    ledger = AudioLedger(sample_rate=16000)
    book = FinalsBook()
    sent, published, order = [], [], []

    async def send(payload):
        # What the client is told must already be stored.
        if payload["type"] == "Transcript":
            stored = await adb(list)(session.segments.values_list("segment_id", flat=True))
            order.append(payload["segment_id"] in stored)
        else:
            index = await adb(audio_store.parts_scan)(session)
            order.append(index.durable_bytes >= payload["audio_bytes_durable"])
        sent.append(payload)

    async def renew():
        pass

    flusher = Flusher(
        ledger=ledger,
        finals=book,
        session=session,
        principal=principal_clinician_a,
        counters=StreamCounters(),
        renew=renew,
        send=send,
        publish=published.append,
        on_ack=lambda: None,
        clock=loop.time,
    )
    ledger.accept(b"\x01" * 3200)
    book.add(_final(2))
    book.add(_final(1))
    await flusher.flush()
    assert [m["type"] for m in sent] == ["Transcript", "Transcript", "Ack"]
    assert [m["segment_id"] for m in sent[:2]] == ["seg-1", "seg-2"]  # in time order
    assert all(order) and sent[-1]["audio_bytes_durable"] == 3200 == ledger.durable
    assert [m["segment_id"] for m in published] == ["seg-1", "seg-2"]
    await flusher.flush()  # nothing new: nothing sent twice
    assert len(sent) == 3
