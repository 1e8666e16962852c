"""Batch transcription: an uploaded WAV becomes a session (source="batch")
transcribed in the background by the configured engine.

``batch_create`` validates the upload (size, RIFF/WAVE, PCM16 mono,
8-48 kHz), creates the session through ``session_create``, stores the audio
as the session's ``audio.wav`` and starts the job. The job runs *in this
process* on a daemon thread with its own event loop (at most
``MAX_RUNNING_JOBS`` at once; more wait for a free thread): good enough for
the supplementary path, but a job dies with its process and is not resumed
— its session then stays ``live`` with its last progress (see README, AWS).

The job streams the audio through the same engine stack as a live session:
quota-bound engines (AWS) go through the engine quota queue and the
resilient wrapper, paced at real time because Transcribe Streaming expects a
live source; other engines get the audio as fast as they take it.
``session.progress`` (percent) follows the audio sent; the finals are
stored like live finals, so the transcript is read the usual way.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connections, transaction
from django.utils import timezone

from clinics.access import Principal, access_session
from clinics.audit import AuditAction, audit_record
from sessions import storage_keys
from sessions.failure import session_fail
from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment
from sessions.services import quota_ensure_available, session_create
from voiceai.errors import DomainError, InvalidInput
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
    from transcription.audio import wav_bytes

    with transaction.atomic():
        session = session_create(
            principal=principal, external_ref=external_ref, language=language, sample_rate=audio.sample_rate
        )
        wav = wav_bytes(audio.pcm, audio.sample_rate)
        key = storage_keys.audio_wav_key(session)
        # Written inside the transaction: if storage fails, no session is left
        # pointing at missing audio (S3 is not rolled back, but nothing refers to it).
        default_storage.save(key, ContentFile(wav))
        session.source = "batch"
        session.status = SessionStatus.LIVE
        session.started_at = timezone.now()
        session.storage_key = key
        session.audio_bytes = len(audio.pcm)
        session.audio_duration_ms = len(audio.pcm) * 1000 // (audio.sample_rate * 2)
        session.audio_sha256 = hashlib.sha256(wav).hexdigest()
        session.save(
            update_fields=[
                "source", "status", "started_at", "storage_key", "audio_bytes", "audio_duration_ms", "audio_sha256",
            ]
        )  # fmt: skip
        audit_record(
            clinic=principal.clinic,
            action=AuditAction.AUDIO_WRITE,
            object_type="session",
            object_id=session.pk,
            actor=principal,
            details={"source": "batch", "audio_bytes": session.audio_bytes},
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


async def _db(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """ORM work from the job's event loop: on a worker thread, whose
    connection is closed afterwards (threads of the default executor live on)."""

    def call() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    return await asyncio.to_thread(call)


async def _transcribe(*, principal: Principal, session_id: Any, pcm: bytes) -> None:
    from transcription.engine_leases import QuotaOpener
    from transcription.engine_quota import get_engine_quota
    from transcription.engines import get_engine
    from transcription.engines.base import EngineError, StreamConfig
    from transcription.resilient import open_resilient

    session = await _db(access_session, principal, session_id)
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
            engine, get_engine_quota(), clinic_id=str(session.clinic_id), priority=principal.clinic.priority - 1
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
                await _db(_progress_save, session_id=session.pk, progress=progress)
            if reader.done():
                break  # the engine failed; collect() holds the error
        await stream.end()
        await reader
    except EngineError as exc:
        await _db(session_fail, principal=principal, session_id=session.pk, reason=exc.code)
        log.warning("batch_engine_failed", session_id=str(session.pk), code=exc.code)
        return
    finally:
        await stream.aclose()
    await _db(_finish, principal=principal, session_id=session.pk, finals=list(finals.values()))


def transcript_json_write(session: ConsultationSession, rows: list[TranscriptSegment]) -> None:
    """The same ``transcript.json`` a sealed live session gets (also used
    when late finals of a live session arrive after it was sealed)."""
    import json

    from transcription.audio_parts import json_write

    transcript = {
        "session_id": str(session.pk),
        "language": session.language,
        "sample_rate": session.sample_rate,
        "audio_ms": session.audio_duration_ms,
        "audio_sha256": session.audio_sha256,
        "segments": [
            {"segment_id": r.segment_id, "start_ms": r.start_ms, "end_ms": r.end_ms, "text": r.text,
             "speaker": r.speaker, "confidence": r.confidence}
            for r in rows
        ],
    }  # fmt: skip
    json_write(storage_keys.transcript_json_key(session), json.dumps(transcript, ensure_ascii=False).encode())


def _progress_save(*, session_id: Any, progress: int) -> None:
    ConsultationSession.objects.filter(pk=session_id, status=SessionStatus.LIVE).update(progress=progress)


@transaction.atomic
def _finish(*, principal: Principal, session_id: Any, finals: list) -> None:
    session = access_session(principal, session_id, for_update=True)
    rows = [
        TranscriptSegment(
            clinic=principal.clinic, session=session, segment_id=f.segment_id[:100], revision=f.revision,
            start_ms=max(0, f.start_ms), end_ms=max(0, f.end_ms), text=f.text, speaker=f.speaker[:32],
            confidence=f.confidence, is_final=True,
        )
        for f in sorted(finals, key=lambda f: (f.start_ms, f.end_ms))
    ]  # fmt: skip
    TranscriptSegment.objects.bulk_create(rows, ignore_conflicts=True)
    transcript_json_write(session, rows)
    if session.status == SessionStatus.LIVE:
        session.status = SessionStatus.ENDED
        session.ended_at = timezone.now()
    session.progress = 100
    session.save(update_fields=["status", "ended_at", "progress"])
    audit_record(
        clinic=principal.clinic,
        action=AuditAction.TRANSCRIPT_WRITE,
        object_type="session",
        object_id=session.pk,
        actor=principal,
        details={"source": "batch", "segments": len(rows)},
    )
    log.info("batch_finished", session_id=str(session.pk), segments=len(rows))
