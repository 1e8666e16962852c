"""FinalsBook and Flusher on their own: finals are stored before anyone is
told, told once, in order, and the stream remembers a bounded set of them."""

import asyncio

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import transcription.flusher as flusher_module
from sessions import audio_store
from sessions.models import TranscriptSegment
from sessions.services import FinalsWrite, finals_store_many
from tests.transcription.helpers import adb, make_session
from transcription.audio_ledger import AudioLedger
from transcription.engine_feed import MAX_REPLAY_MS
from transcription.engines.base import TranscriptEvent
from transcription.flusher import FinalsBook, FinalsCommit, Flusher
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


async def test_finals_of_streams_flushing_together_go_to_the_database_in_one_insert(
    principal_clinician_a, principal_b, stream_settings, monkeypatch
):
    sessions = [await adb(make_session)(principal_clinician_a) for _ in range(2)]
    session_b = await adb(make_session)(principal_b)
    writes = [
        FinalsWrite(principal_clinician_a, sessions[0].pk, [_final(1), _final(2)]),
        FinalsWrite(principal_clinician_a, sessions[1].pk, [_final(1)]),
        FinalsWrite(principal_b, session_b.pk, [_final(3)]),
    ]
    inserts: list[list[str]] = []

    def counted(batch):
        # Runs on the worker thread: its own connection's statements.
        with CaptureQueriesContext(connection) as ctx:
            finals_store_many(batch)
        inserts.append([q["sql"] for q in ctx.captured_queries if q["sql"].startswith("INSERT")])

    monkeypatch.setattr(flusher_module, "finals_store_many", counted)
    commit = FinalsCommit(window=0.05)
    await asyncio.gather(*(commit.store(w) for w in writes))
    assert [len(statements) for statements in inserts] == [1]  # one call, one INSERT
    rows = await adb(list)(TranscriptSegment.objects.values_list("clinic_id", "session_id", "segment_id"))
    clinic_a, clinic_b = principal_clinician_a.clinic.pk, principal_b.clinic.pk
    assert sorted(rows, key=str) == sorted(
        [
            (clinic_a, sessions[0].pk, "seg-1"),
            (clinic_a, sessions[0].pk, "seg-2"),
            (clinic_a, sessions[1].pk, "seg-1"),
            (clinic_b, session_b.pk, "seg-3"),
        ],
        key=str,
    )


async def test_a_failed_group_insert_fails_each_waiting_flush_and_a_later_window_stores_them(
    principal_clinician_a, stream_settings, monkeypatch
):
    session = await adb(make_session)(principal_clinician_a)
    commit = FinalsCommit(window=0.01)

    def broken(batch):
        raise OSError("database went away")

    monkeypatch.setattr(flusher_module, "finals_store_many", broken)
    results = await asyncio.gather(
        commit.store(FinalsWrite(principal_clinician_a, session.pk, [_final(1)])),
        commit.store(FinalsWrite(principal_clinician_a, session.pk, [_final(2)])),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [OSError, OSError]
    assert await adb(TranscriptSegment.objects.count)() == 0
    monkeypatch.setattr(flusher_module, "finals_store_many", finals_store_many)
    await commit.store(FinalsWrite(principal_clinician_a, session.pk, [_final(1), _final(2)]))
    assert await adb(TranscriptSegment.objects.count)() == 2
