"""The session's audio store: parts while it streams, the sealed WAV and
the ``transcript.json`` beside it (keys in ``sessions.storage_keys``).

Parts are named by byte range and read back as one contiguous PCM stream.

Storage is authoritative for resume: the durable offset is where the chain
of parts starting at byte 0 ends. Parts may overlap (two owners around a
takeover wrote the same client bytes); the chain takes each byte once. A
part cut short by a crash mid-write (possible on local files) is detected
by its size and dropped, so the client resends those bytes.

These functions do blocking I/O: call them in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, default_storage

from sessions import storage_keys
from sessions.audio import wav_header
from sessions.formats import SegmentLike, speaker_roles, transcript_document

# Parts whose size is checked against their name on a scan. Writes are
# serial per owner, so only the newest parts can be cut short by a crash.
_VERIFY_LAST = 3


@dataclass(frozen=True, slots=True)
class Part:
    name: str  # storage key
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ChainLink:
    part: Part
    skip: int  # bytes of the part already covered by earlier links
    take: int


@dataclass(frozen=True, slots=True)
class PartsIndex:
    chain: list[ChainLink]
    durable_bytes: int
    part_count: int


def _storage(storage: Storage | None) -> Storage:
    return storage or default_storage


def parts_list(session, *, storage: Storage | None = None) -> list[Part]:
    storage = _storage(storage)
    prefix = storage_keys.audio_parts_prefix(session)
    try:
        _, files = storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return []
    parts = []
    for name in files:
        byte_range = storage_keys.audio_part_range(name)
        if byte_range is not None:
            parts.append(Part(name=f"{prefix}{name}", start=byte_range[0], end=byte_range[1]))
    return parts


def parts_chain(parts: list[Part]) -> tuple[list[ChainLink], int]:
    """The contiguous cover of [0, durable) by ``parts``: greedy, taking at
    each offset the part reaching furthest."""
    ordered = sorted(parts, key=lambda p: (p.start, -p.end))
    chain: list[ChainLink] = []
    offset, i = 0, 0
    while True:
        best: Part | None = None
        while i < len(ordered) and ordered[i].start <= offset:
            if best is None or ordered[i].end > best.end:
                best = ordered[i]
            i += 1
        # Parts seen in earlier rounds all end at or before ``offset``.
        if best is None or best.end <= offset:
            return chain, offset
        chain.append(ChainLink(part=best, skip=offset - best.start, take=best.end - offset))
        offset = best.end


def parts_scan(session, *, storage: Storage | None = None) -> PartsIndex:
    """Index the stored parts; drops (deletes) a newest part whose size
    doesn't match its name."""
    storage = _storage(storage)
    parts = parts_list(session, storage=storage)
    chain, durable = parts_chain(parts)
    for link in chain[-_VERIFY_LAST:]:
        part = link.part
        if storage.size(part.name) != part.end - part.start:
            storage.delete(part.name)
            parts = [p for p in parts if p.name != part.name]
            chain, durable = parts_chain(parts)
            break
    return PartsIndex(chain=chain, durable_bytes=durable, part_count=len(parts))


def part_write(session, *, start: int, data: bytes, storage: Storage | None = None) -> str:
    """Store ``data`` as the part [start, start+len). Same range again
    overwrites (FileSystemStorage would otherwise pick another name)."""
    storage = _storage(storage)
    key = storage_keys.audio_part_key(session, start, start + len(data))
    if isinstance(storage, FileSystemStorage) and storage.exists(key):
        storage.delete(key)
    saved = storage.save(key, ContentFile(data))
    if saved != key:  # pragma: no cover - would break the naming contract
        raise OSError("storage renamed an audio part")
    return key


def pcm_iter(index: PartsIndex, *, storage: Storage | None = None, start: int = 0) -> Iterator[bytes]:
    """The stored PCM from ``start`` to the durable end, part by part."""
    storage = _storage(storage)
    position = 0
    for link in index.chain:
        link_end = position + link.take
        if link_end <= start:
            position = link_end
            continue
        with storage.open(link.part.name, "rb") as fh:
            data = fh.read()
        skip = link.skip + max(0, start - position)
        yield data[skip : link.skip + link.take]
        position = link_end


def wav_write(session, *, index: PartsIndex, sample_rate: int, storage: Storage | None = None) -> tuple[str, str]:
    """Assemble the canonical WAV from the parts; returns (key, sha256).

    Through a temporary file on disk, one part at a time: a WAV assembled
    in memory (it was, up to 16 MB, ~8 minutes of audio) made every seal a
    multi-megabyte allocation in a worker thread's malloc arena, and a
    process sealing sessions all day grew by megabytes a minute (measured by
    ``make soak``)."""
    storage = _storage(storage)
    key = storage_keys.audio_wav_key(session)
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as tmp:
        header = wav_header(index.durable_bytes, sample_rate)
        tmp.write(header)
        digest.update(header)
        for chunk in pcm_iter(index, storage=storage):
            tmp.write(chunk)
            digest.update(chunk)
        tmp.seek(0)
        if storage.exists(key):
            storage.delete(key)
        saved = storage.save(key, File(tmp, name="audio.wav"))
    return saved, digest.hexdigest()


def wav_store(session, wav: bytes | IO[bytes], *, storage: Storage | None = None) -> str:
    """Store a whole WAV (a batch upload) as the session's audio; returns its
    key. A file object is copied piece by piece (local files) or as a
    multipart upload (S3), never read whole into memory."""
    content = ContentFile(wav) if isinstance(wav, bytes) else File(wav)
    return _storage(storage).save(storage_keys.audio_wav_key(session), content)


def transcript_json_write(
    session,
    segments: Iterable[SegmentLike],
    *,
    audio_ms: int,
    sha256: str,
    storage: Storage | None = None,
) -> str:
    """(Re)write the session's ``transcript.json`` beside its WAV."""
    storage = _storage(storage)
    segments = list(segments)
    document = transcript_document(
        segments,
        session_id=session.pk,
        language=session.language,
        roles=speaker_roles((s.speaker for s in segments), session.speaker_roles),
        sample_rate=session.sample_rate,
        audio_ms=audio_ms,
        audio_sha256=sha256,
    )
    key = storage_keys.transcript_json_key(session)
    if storage.exists(key):
        storage.delete(key)
    return storage.save(key, ContentFile(json.dumps(document, ensure_ascii=False).encode()))


def parts_delete(index_or_parts: list[Part], *, storage: Storage | None = None) -> int:
    storage = _storage(storage)
    for part in index_or_parts:
        storage.delete(part.name)
    return len(index_or_parts)
