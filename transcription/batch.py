"""Batch transcription: an uploaded WAV becomes a session (source="batch")
transcribed in the background by the configured engine.

``batch_create`` validates the upload (size, RIFF/WAVE, PCM16 mono,
8-48 kHz), creates the session and stores the audio as its ``audio.wav``
(``sessions.services.batch_session_create``) and starts the job. The job runs *in this
process* on a daemon thread with its own event loop (at most
``MAX_RUNNING_JOBS`` at once; more wait for a free thread): good enough for
the supplementary path, but a job dies with its process and is not resumed
— its session then stays ``live`` with its last progress (see README, AWS).

The job streams the audio through the same engine stack as a live session:
quota-bound engines (AWS) go through the engine quota queue and the
resilient wrapper, paced at real time because Transcribe Streaming expects a
live source; other engines get the audio as fast as they take it.
``session.progress`` (percent) follows the audio sent; the finals are
stored like live finals, so the transcript is read the usual way. Every
session write is a ``sessions.services`` call; this module runs the engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connections, transaction

from clinics.access import Principal, access_session
from sessions.audio import WAV_HEADER_BYTES, pcm_ms, wav_header
from sessions.models import ConsultationSession
from sessions.services import (
    batch_finish,
    batch_progress_save,
    batch_session_create,
    consent_ensure_for_audio,
    quota_ensure_available,
    quota_ensure_room,
    session_fail,
)
from sessions.storage import storage_aiter_range
from transcription import engine_quota
from transcription.engine_leases import QuotaOpener
from transcription.engines import get_engine
from transcription.engines.base import EngineError, StreamConfig
from transcription.resilient import open_resilient
from voiceai.db import db_async
from voiceai.errors import Close, DomainError, InvalidInput
from voiceai.logging import get_logger

log = get_logger(__name__)

SAMPLE_RATE_MIN = 8000
SAMPLE_RATE_MAX = 48000
CHUNK_MS = 100
MAX_RUNNING_JOBS = 2
_slots = threading.BoundedSemaphore(MAX_RUNNING_JOBS)
_threads: set[threading.Thread] = set()


class UploadTooLarge(DomainError):
    status = 413
    close_code = Close.PROTOCOL
    code = "upload_too_large"
    default_message = "The upload is larger than BATCH_UPLOAD_MAX_BYTES."


@dataclass(frozen=True, slots=True)
class WavLayout:
    """Where the samples of an uploaded WAV are: found by reading its chunk
    headers only, so an upload is never held in memory."""

    sample_rate: int
    data_offset: int
    data_bytes: int


#: Largest fmt chunk read (PCM needs 16 bytes, WAVE_FORMAT_EXTENSIBLE 40).
_FMT_MAX = 1024
#: Reads from the upload and from storage go in pieces of this size.
READ_CHUNK = 256 * 1024


def _file_size(upload: Any) -> int:
    size = getattr(upload, "size", None)
    if size is None:
        upload.seek(0, 2)
        size = upload.tell()
    return int(size)


def wav_inspect(upload: Any) -> WavLayout:
    """PCM16 mono 8-48 kHz WAV → its rate and where its samples are;
    InvalidInput with a stable code otherwise. Walks the RIFF chunk headers
    with seeks (odd chunks like LIST/fact are skipped unread), so the errors
    can say what is wrong without reading the audio."""
    size = _file_size(upload)
    upload.seek(0)
    head = upload.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise InvalidInput("The file is not a RIFF/WAVE file.", code="invalid_wav")
    fmt: bytes | None = None
    data: tuple[int, int] | None = None
    pos = 12
    while pos + 8 <= size:
        upload.seek(pos)
        header = upload.read(8)
        if len(header) < 8:
            break
        chunk_id, chunk_size = header[:4], int.from_bytes(header[4:8], "little")
        if chunk_id == b"fmt ":
            fmt = upload.read(min(chunk_size, _FMT_MAX))
        elif chunk_id == b"data":
            data = (pos + 8, min(chunk_size, size - pos - 8))
            break
        pos += 8 + chunk_size + (chunk_size & 1)  # chunks are word-aligned
    if fmt is None or len(fmt) < 16 or data is None:
        raise InvalidInput("The WAV file has no fmt or data chunk.", code="invalid_wav")
    audio_format = int.from_bytes(fmt[0:2], "little")
    channels = int.from_bytes(fmt[2:4], "little")
    sample_rate = int.from_bytes(fmt[4:8], "little")
    bits = int.from_bytes(fmt[14:16], "little")
    if audio_format == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format says
        audio_format = int.from_bytes(fmt[24:26], "little")
    if audio_format != 1 or bits != 16 or channels != 1:
        raise InvalidInput(
            "Only 16-bit PCM mono WAV is accepted.",
            code="unsupported_wav_format",
            details={"format": audio_format, "bits_per_sample": bits, "channels": channels},
        )
    if not SAMPLE_RATE_MIN <= sample_rate <= SAMPLE_RATE_MAX:
        raise InvalidInput(
            f"The sample rate must be {SAMPLE_RATE_MIN}-{SAMPLE_RATE_MAX} Hz.",
            code="unsupported_sample_rate",
            details={"sample_rate": sample_rate},
        )
    offset, length = data
    length -= length % 2
    if length <= 0:
        raise InvalidInput("The WAV file holds no audio.", code="empty_audio")
    return WavLayout(sample_rate=sample_rate, data_offset=offset, data_bytes=length)


class WavUpload:
    """The stored ``audio.wav`` of an upload as a read-only file: our own
    44-byte header, then the upload's samples read in pieces. Storage
    backends copy it chunk by chunk (local files) or as a multipart upload
    (S3), so memory stays at one piece whatever the length."""

    def __init__(self, upload: Any, layout: WavLayout) -> None:
        self._upload = upload
        self._layout = layout
        self._header = wav_header(layout.data_bytes, layout.sample_rate)
        self.size = len(self._header) + layout.data_bytes
        self._pos = 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = {0: pos, 1: self._pos + pos, 2: self.size + pos}[whence]
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self._pos
        out = bytearray()
        if self._pos < len(self._header) and n > 0:
            piece = self._header[self._pos : self._pos + n]
            out += piece
            self._pos += len(piece)
            n -= len(piece)
        if n > 0 and self._pos < self.size:
            start = self._pos - len(self._header)
            self._upload.seek(self._layout.data_offset + start)
            piece = self._upload.read(min(n, self._layout.data_bytes - start))
            out += piece
            self._pos += len(piece)
        return bytes(out)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        self.seek(0)
        while piece := self.read(READ_CHUNK):
            digest.update(piece)
        self.seek(0)
        return digest.hexdigest()


def batch_create(
    *,
    principal: Principal,
    upload: Any,
    language: str | None = None,
    external_ref: str = "",
    consent_method: str = "",
    consent_note: str = "",
) -> ConsultationSession:
    """Validate and store the upload, create the batch session, start the
    job. Nothing is created when the upload is rejected — nor, when the
    clinic requires consent, when it comes without ``consent_method``."""
    consent_ensure_for_audio(principal=principal, consent_method=consent_method)
    size = getattr(upload, "size", None) or 0
    if size > settings.BATCH_UPLOAD_MAX_BYTES:
        raise UploadTooLarge(details={"max_bytes": settings.BATCH_UPLOAD_MAX_BYTES})
    # Before reading up to BATCH_UPLOAD_MAX_BYTES; session_create checks again.
    quota_ensure_available(clinic=principal.clinic)
    layout = wav_inspect(upload)
    # The whole upload against what is left of the clinic's storage, audio
    # minutes and session length, before a byte of it is stored.
    quota_ensure_room(
        clinic=principal.clinic,
        audio_bytes=layout.data_bytes,
        audio_ms=pcm_ms(layout.data_bytes, layout.sample_rate),
    )
    wav = WavUpload(upload, layout)
    with transaction.atomic():
        session = batch_session_create(
            principal=principal,
            sample_rate=layout.sample_rate,
            audio_bytes=layout.data_bytes,
            wav=wav,
            wav_sha256=wav.sha256(),
            language=language,
            external_ref=external_ref,
            consent_method=consent_method,
            consent_note=consent_note,
        )
        transaction.on_commit(lambda: batch_start(principal=principal, session_id=session.pk))
    log.info("batch_created", session_id=str(session.pk), audio_ms=session.audio_duration_ms)
    return session


def batch_start(*, principal: Principal, session_id: Any) -> threading.Thread:
    thread = threading.Thread(
        target=_run_job, kwargs={"principal": principal, "session_id": session_id},
        name=f"batch-{session_id}", daemon=True,
    )  # fmt: skip
    _threads.add(thread)
    thread.start()
    return thread


def batch_wait(timeout: float = 30.0) -> None:
    """Wait for the running jobs (tests, graceful shutdown)."""
    deadline = time.monotonic() + timeout
    for thread in list(_threads):
        thread.join(max(0.0, deadline - time.monotonic()))


def _run_job(*, principal: Principal, session_id: Any) -> None:
    try:
        with _slots:
            asyncio.run(_transcribe(principal=principal, session_id=session_id))
    except Exception:
        log.exception("batch_failed", session_id=str(session_id))
        try:
            session_fail(principal=principal, session_id=session_id, reason="internal_error")
        except Exception:
            log.exception("batch_fail_mark_failed", session_id=str(session_id))
    finally:
        connections.close_all()
        _threads.discard(threading.current_thread())


async def _pcm_chunks(session: ConsultationSession, chunk: int) -> AsyncIterator[bytes]:
    """The stored WAV's samples in ``chunk``-byte pieces, read from storage
    a piece at a time (a ranged GET on S3): the job never holds the file."""
    pending = b""
    async for block in storage_aiter_range(
        session.storage_key, start=WAV_HEADER_BYTES, length=session.audio_bytes, chunk_size=READ_CHUNK
    ):
        pending += block
        while len(pending) >= chunk:
            yield pending[:chunk]
            pending = pending[chunk:]
    if pending:
        yield pending


async def _transcribe(*, principal: Principal, session_id: Any) -> None:
    session = await db_async(access_session)(principal, session_id)
    engine = get_engine(session.engine or None)
    config = StreamConfig(
        session_id=str(session.pk),
        clinic_id=str(session.clinic_id),
        language=session.language,
        sample_rate=session.sample_rate,
        vocabulary_name=principal.clinic.custom_vocabulary_name,
        show_speaker_labels=settings.TRANSCRIPTION_SPEAKER_LABELS,
    )
    paced = bool(getattr(engine, "uses_engine_quota", False))
    if paced:
        # One below the clinic's live sessions: a waiting consultation goes
        # before a batch job of the same clinic (aging still moves it up).
        opener = QuotaOpener(
            engine,
            engine_quota.get_engine_quota(),
            clinic_id=str(session.clinic_id),
            priority=principal.clinic.priority - 1,
        )
        stream = open_resilient(engine, config, opener=opener)
    else:
        stream = open_resilient(engine, config)
    finals: dict[str, Any] = {}

    async def collect() -> None:
        async for event in stream.events():
            if event.is_final:
                finals[event.segment_id] = event

    reader = asyncio.ensure_future(collect())
    chunk = session.sample_rate * 2 * CHUNK_MS // 1000
    reported = 0
    try:
        total = max(1, session.audio_bytes)
        sent = 0
        index = 0
        async for piece in _pcm_chunks(session, chunk):
            stream.send_audio(piece)
            sent += len(piece)
            index += 1
            if paced:
                await asyncio.sleep(CHUNK_MS / 1000)
            else:
                await asyncio.sleep(0)
            progress = min(99, sent * 100 // total)
            if progress >= reported + 5 or (index % 50 == 0 and progress > reported):
                reported = progress
                await db_async(batch_progress_save)(session_id=session.pk, progress=progress)
            if reader.done():
                break  # the engine failed; collect() holds the error
        await stream.end()
        await reader
    except EngineError as exc:
        await db_async(session_fail)(principal=principal, session_id=session.pk, reason=exc.code)
        log.warning("batch_engine_failed", session_id=str(session.pk), code=exc.code)
        return
    finally:
        await stream.aclose()
    await db_async(batch_finish)(principal=principal, session_id=session.pk, finals=list(finals.values()))
