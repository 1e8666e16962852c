"""Audio parts in storage: the durable offset and the PCM read back are
right with overlapping parts (two owners around a takeover), a part cut
short by a crash, and the same range written twice."""

import uuid
from types import SimpleNamespace

import pytest
from django.core.files.storage import FileSystemStorage

from sessions.audio_store import Part, part_write, parts_chain, parts_list, parts_scan, pcm_iter
from sessions.storage_keys import audio_part_range
from tests.transcription.helpers import pcm


@pytest.fixture
def storage(tmp_path):
    return FileSystemStorage(location=str(tmp_path))


@pytest.fixture
def session():
    return SimpleNamespace(id=uuid.uuid4(), clinic_id=uuid.uuid4())


def _read(session, storage) -> bytes:
    return b"".join(pcm_iter(parts_scan(session, storage=storage), storage=storage))


def test_it_reads_back_contiguous_parts_as_one_stream(session, storage):
    audio = pcm(10_000, seed=1)
    for start in range(0, 10_000, 3_000):
        part_write(session, start=start, data=audio[start : start + 3_000], storage=storage)
    index = parts_scan(session, storage=storage)
    assert (index.durable_bytes, index.part_count) == (10_000, 4)
    assert _read(session, storage) == audio


def test_it_takes_each_byte_once_from_overlapping_parts(session, storage):
    audio = pcm(12_000, seed=2)
    # Old owner wrote [0, 5000) and, racing a takeover, [5000, 9000); the new
    # owner resumed at 5000 and wrote [5000, 7000) then [7000, 12000).
    for start, end in [(0, 5_000), (5_000, 9_000), (5_000, 7_000), (7_000, 12_000)]:
        part_write(session, start=start, data=audio[start:end], storage=storage)
    assert parts_scan(session, storage=storage).durable_bytes == 12_000
    assert _read(session, storage) == audio


def test_it_stops_the_durable_offset_at_a_gap(session, storage):
    audio = pcm(9_000, seed=3)
    part_write(session, start=0, data=audio[:3_000], storage=storage)
    part_write(session, start=6_000, data=audio[6_000:], storage=storage)
    assert parts_scan(session, storage=storage).durable_bytes == 3_000


def test_it_drops_a_part_cut_short_by_a_crash(session, storage):
    audio = pcm(6_000, seed=4)
    part_write(session, start=0, data=audio[:3_000], storage=storage)
    key = part_write(session, start=3_000, data=audio[3_000:], storage=storage)
    with open(storage.path(key), "r+b") as fh:  # the write was interrupted
        fh.truncate(1_000)
    index = parts_scan(session, storage=storage)
    assert index.durable_bytes == 3_000 and not storage.exists(key)
    part_write(session, start=3_000, data=audio[3_000:], storage=storage)  # the client resends
    assert _read(session, storage) == audio


def test_it_overwrites_the_same_range_instead_of_duplicating_it(session, storage):
    audio = pcm(4_000, seed=5)
    part_write(session, start=0, data=audio, storage=storage)
    part_write(session, start=0, data=audio, storage=storage)
    assert len(parts_list(session, storage=storage)) == 1


def test_it_parses_only_part_names():
    assert audio_part_range("000000000000000-000000000003200.pcm") == (0, 3200)
    assert audio_part_range("x/y/000000000003200-000000000006400.pcm") == (3200, 6400)
    assert audio_part_range("audio.wav") is None
    assert audio_part_range("000000000003200-000000000003200.pcm") is None


def test_it_chains_greedily_by_furthest_reach():
    parts = [Part("a", 0, 10), Part("b", 0, 4), Part("c", 4, 12), Part("d", 10, 20), Part("e", 25, 30)]
    chain, durable = parts_chain(parts)
    assert durable == 20
    assert [(link.part.name, link.skip, link.take) for link in chain] == [("a", 0, 10), ("d", 0, 10)]


def test_it_seals_a_long_session_without_holding_its_audio_in_memory(session, storage):
    """A seal reads one part at a time into a file: a session's whole audio
    is never one allocation (sessions are sealed all day, by the hundred)."""
    import tracemalloc

    from sessions.audio_store import wav_write

    second = pcm(32_000, seed=5)  # 1 s of 16 kHz PCM16
    for i in range(240):  # 4 minutes: 7.7 MB
        part_write(session, start=i * 32_000, data=second, storage=storage)
    index = parts_scan(session, storage=storage)
    tracemalloc.start()
    try:
        key, sha256 = wav_write(session, index=index, sample_rate=16000, storage=storage)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024
    with storage.open(key, "rb") as fh:
        wav = fh.read()
    assert len(wav) == 44 + 240 * 32_000 and wav[44 : 44 + 32_000] == second
    import hashlib

    assert hashlib.sha256(wav).hexdigest() == sha256
