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
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connections, transaction

from clinics.access import Principal, access_session
from sessions.audio import wav_bytes
from sessions.models import ConsultationSession
from sessions.services import (
    batch_finish,
    batch_progress_save,
    batch_session_create,
    quota_ensure_available,
    session_fail,
)
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
class WavAudio:
    sample_rate: int
    pcm: bytes


def wav_parse(data: bytes) -> WavAudio:
    """PCM16 mono 8-48 kHz WAV → its rate and samples; InvalidInput with a
    stable code otherwise. Walks the RIFF chunks itself so the errors can
    say what is wrong (and odd chunks like LIST/fact are skipped)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InvalidInput("The file is not a RIFF/WAVE file.", code="invalid_wav")
    fmt: bytes | None = None
    pcm: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            pcm = body
            break
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    if fmt is None or len(fmt) < 16 or pcm is None:
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
    pcm = pcm[: len(pcm) - len(pcm) % 2]
    if not pcm:
        raise InvalidInput("The WAV file holds no audio.", code="empty_audio")
    return WavAudio(sample_rate=sample_rate, pcm=pcm)


def batch_create(
    *, principal: Principal, upload: Any, language: str | None = None, external_ref: str = ""
) -> ConsultationSession:
    """Validate and store the upload, create the batch session, start the
    job. Nothing is created when the upload is rejected."""
    size = getattr(upload, "size", None) or 0
    if size > settings.BATCH_UPLOAD_MAX_BYTES:
        raise UploadTooLarge(details={"max_bytes": settings.BATCH_UPLOAD_MAX_BYTES})
    # Before reading and parsing up to BATCH_UPLOAD_MAX_BYTES; session_create checks again.
    quota_ensure_available(clinic=principal.clinic)
    audio = wav_parse(upload.read(settings.BATCH_UPLOAD_MAX_BYTES + 1))
    with transaction.atomic():
        session = batch_session_create(
            principal=principal,
            pcm=audio.pcm,
            sample_rate=audio.sample_rate,
            wav=wav_bytes(audio.pcm, audio.sample_rate),
            language=language,
            external_ref=external_ref,
        )
        transaction.on_commit(lambda: batch_start(principal=principal, session_id=session.pk, pcm=audio.pcm))
    log.info("batch_created", session_id=str(session.pk), audio_ms=session.audio_duration_ms)
    return session


def batch_start(*, principal: Principal, session_id: Any, pcm: bytes) -> threading.Thread:
    thread = threading.Thread(
        target=_run_job, kwargs={"principal": principal, "session_id": session_id, "pcm": pcm},
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


def _run_job(*, principal: Principal, session_id: Any, pcm: bytes) -> None:
    try:
        with _slots:
            asyncio.run(_transcribe(principal=principal, session_id=session_id, pcm=pcm))
    except Exception:
        log.exception("batch_failed", session_id=str(session_id))
        try:
            session_fail(principal=principal, session_id=session_id, reason="internal_error")
        except Exception:
            log.exception("batch_fail_mark_failed", session_id=str(session_id))
    finally:
        connections.close_all()
        _threads.discard(threading.current_thread())


async def _transcribe(*, principal: Principal, session_id: Any, pcm: bytes) -> None:
    session = await db_async(access_session)(principal, session_id)
    engine = get_engine(session.engine or None)
    config = StreamConfig(
        session_id=str(session.pk),
        clinic_id=str(session.clinic_id),
        language=session.language,
        sample_rate=session.sample_rate,
        vocabulary_name=principal.clinic.custom_vocabulary_name,
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
        for index, offset in enumerate(range(0, len(pcm), chunk)):
            stream.send_audio(pcm[offset : offset + chunk])
            if paced:
                await asyncio.sleep(CHUNK_MS / 1000)
            else:
                await asyncio.sleep(0)
            progress = min(99, (offset + chunk) * 100 // len(pcm))
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
