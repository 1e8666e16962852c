"""Database and storage work of the realtime pipeline, at session edges and
flushes only — never per audio frame.

Every function here is synchronous; the consumers and the stream call them
through ``database_sync_to_async`` (DB) or a worker thread (storage), once
per connection or once per flush.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import import_module
from types import SimpleNamespace

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AbstractBaseUser
from django.db import close_old_connections, transaction
from django.utils import timezone

from clinics.access import Principal, access_session, memberships_of, principal_for_user, segments_visible_to
from clinics.audit import AuditAction, audit_record
from sessions import storage_keys
from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment
from sessions.services import quota_ensure_available
from sessions.tokens import InvalidStreamToken, stream_token_consume
from transcription import audio_parts
from transcription.audio import pcm_ms
from transcription.engines.base import TranscriptEvent
from transcription.wire import Close, StreamError
from voiceai.errors import ClinicSuspended, NotFound, QuotaExceeded
from voiceai.logging import get_logger

log = get_logger(__name__)

DEFAULT_MAX_CONCURRENT = 20


def db_async(fn):
    """``fn`` as a coroutine function run on the shared thread pool (not the
    single thread-sensitive executor, so sessions don't queue behind each
    other). Connection hygiene runs *inside* the call: asgiref runs the
    function in a copied context, where ``database_sync_to_async``'s own
    clean-up does not see the connection the function used."""

    def call(*args, **kwargs):
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(call, thread_sensitive=False)


_OPEN = (SessionStatus.CREATED, SessionStatus.LIVE)


@dataclass
class StreamAuth:
    principal: Principal
    session: ConsultationSession
    max_concurrent: int
    language: str
    max_session_seconds: int = 0  # 0: no limit
    vocabulary_name: str = ""
    engine_name: str = ""


def authorize(*, token: str | None, web_session_key: str | None, session_id: str, client_ip: str | None) -> StreamAuth:
    """Who connects to which session. A token wins; otherwise the user
    logged in with the web session cookie (the caller passes its key only
    when the Origin was checked). Raises InvalidStreamToken (4401) or
    NotFound (4404, also for other clinics)."""
    user = _web_session_user(web_session_key) if web_session_key and not token else None
    if token:
        principal = stream_token_consume(token=token, session_id=session_id, client_ip=client_ip)
        session = access_session(principal, session_id)
    elif user is not None and getattr(user, "is_authenticated", False):
        principal, session = _user_session(user, session_id, client_ip)
    else:
        raise InvalidStreamToken("A stream token or a logged-in session is required.", code="auth_required")
    clinic = principal.clinic
    quota = getattr(clinic, "quota", None)
    return StreamAuth(
        principal=principal,
        session=session,
        max_concurrent=quota.max_concurrent_sessions if quota is not None else DEFAULT_MAX_CONCURRENT,
        max_session_seconds=quota.max_session_seconds if quota is not None else 0,
        language=session.language,
        vocabulary_name=clinic.custom_vocabulary_name,
        engine_name=session.engine or clinic.transcription_engine or "",
    )


def _web_session_user(session_key: str) -> AbstractBaseUser | None:
    # What Channels' AuthMiddlewareStack does, but only when needed and
    # inside this one DB call (no extra thread hop per connection).
    engine = import_module(settings.SESSION_ENGINE)
    request = SimpleNamespace(session=engine.SessionStore(session_key))
    return auth.get_user(request)


def _user_session(user: AbstractBaseUser, session_id: str, client_ip: str | None):
    # A user may belong to several clinics: try each membership through the
    # access layer; none matching is the same 404 as a missing session. A
    # suspended clinic must not hide the session of another, active one.
    suspended: ClinicSuspended | None = None
    for membership in memberships_of(user):
        try:
            principal = principal_for_user(user, clinic_id=membership.clinic_id, client_ip=client_ip)
        except ClinicSuspended as exc:
            suspended = exc
            continue
        try:
            return principal, access_session(principal, session_id)
        except NotFound:
            continue
    if suspended is not None:
        raise suspended
    raise NotFound("Session not found.")


@dataclass
class StreamStart:
    stored_final_ids: set[str] = field(default_factory=set)
    segments: int = 0
    last_final_end_ms: int = 0
    # Stored finals the client has not received (``finals_received``), as
    # Transcript payloads in the order they were first sent.
    unreceived_finals: list[dict] = field(default_factory=list)


def stream_start(
    *,
    principal: Principal,
    session_id: object,
    resume_from_byte: int,
    takeover: bool,
    finals_received: int | None = None,
) -> StreamStart:
    """Mark the session live and audit the connection. Returns what the
    stream must know of the finals already stored (never re-sent), and the
    stored finals after the first ``finals_received`` ones.

    A stream stores its finals in the order it sends them (one bulk insert
    per flush, then the same order on the socket), so what a client has
    received is a prefix of the stored finals in id order; the rest were
    stored when its connection was already gone (the flush after a drop).
    ``None``: the client did not say, nothing is re-sent."""
    with transaction.atomic():
        session = access_session(principal, session_id, for_update=True)
        if session.status not in _OPEN:
            raise SessionClosed()
        # Once per connect, in this call: refused before the session goes live
        # or a stream.start is audited (frames are never checked).
        try:
            quota_ensure_available(clinic=principal.clinic)
        except QuotaExceeded as exc:
            raise StreamError(Close.QUOTA, exc.code, exc.message) from None
        if session.status == SessionStatus.CREATED:
            session.status = SessionStatus.LIVE
            session.started_at = timezone.now()
            session.save(update_fields=["status", "started_at"])
        finals = segments_visible_to(principal, session)
        rows = list(finals.order_by("id").values_list("id", "segment_id", "end_ms"))
        unreceived: list[dict] = []
        if finals_received is not None and finals_received < len(rows):
            first_id = rows[finals_received][0]
            unreceived = [segment_payload(s) for s in finals.filter(id__gte=first_id).order_by("id")]
        audit_record(
            clinic=principal.clinic,
            action=AuditAction.STREAM_START,
            object_type="session",
            object_id=session.pk,
            actor=principal,
            details={"resume_from_byte": resume_from_byte, "takeover": takeover, "finals_resent": len(unreceived)},
        )
    return StreamStart(
        stored_final_ids={segment_id for _, segment_id, _ in rows},
        segments=len(rows),
        last_final_end_ms=max((end for _, _, end in rows), default=0),
        unreceived_finals=unreceived,
    )


class SessionClosed(Exception):
    """The session has ended or failed: no producer may attach (4409)."""


def session_is_open(*, principal: Principal, session_id: object) -> bool:
    return access_session(principal, session_id).status in _OPEN


def finals_store(*, principal: Principal, session_id: object, finals: list[TranscriptEvent]) -> int:
    """Bulk-insert finals in order (one statement per flush). A segment id
    already stored is skipped by the unique constraint, never duplicated."""
    if not finals:
        return 0
    rows = [
        TranscriptSegment(
            clinic=principal.clinic,
            session_id=session_id,
            segment_id=f.segment_id[:100],
            revision=f.revision,
            start_ms=max(0, f.start_ms),
            end_ms=max(0, f.end_ms),
            text=f.text,
            speaker=f.speaker[:32],
            confidence=f.confidence,
            is_final=True,
        )
        for f in sorted(finals, key=lambda f: (f.start_ms, f.end_ms))
    ]
    TranscriptSegment.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def stream_stop(*, principal: Principal, session_id: object, reason: str, bytes_received: int, durable: int) -> None:
    audit_record(
        clinic=principal.clinic,
        action=AuditAction.STREAM_STOP,
        object_type="session",
        object_id=session_id,
        actor=principal,
        details={"reason": reason, "bytes_received": bytes_received, "audio_bytes_durable": durable},
    )


@dataclass(frozen=True)
class SealResult:
    audio_bytes: int
    audio_ms: int
    segments: int
    sha256: str


def session_seal(*, principal: Principal, session_id: object, drop_parts: bool = True) -> SealResult:
    """End of a session's audio: assemble the WAV from the parts, store its
    sha256 and size, write the transcript JSON beside it, mark the session
    ended, audit the audio and transcript writes once, drop the parts.

    Storage first, then one transaction; idempotent (a sealed session with
    no parts left keeps its WAV; with parts left it is rebuilt from them).

    The producer seals on CloseStream and when the session is ended over
    REST while it streams. For a session ended over REST with no producer
    connected (its audio is only in parts), call this after the commit
    with ``drop_parts=False``: a producer that is still finishing may add a
    last part, and keeping the parts lets its own seal rebuild the WAV in
    full."""
    session = access_session(principal, session_id)
    index = audio_parts.parts_scan(session)
    if index.part_count == 0 and session.audio_sha256:
        return SealResult(
            audio_bytes=session.audio_bytes,
            audio_ms=session.audio_duration_ms,
            segments=segments_visible_to(principal, session).count(),
            sha256=session.audio_sha256,
        )
    wav_key, sha256 = audio_parts.wav_write(session, index=index, sample_rate=session.sample_rate)
    segments = list(segments_visible_to(principal, session).order_by("start_ms", "id"))
    audio_ms = pcm_ms(index.durable_bytes, session.sample_rate)
    transcript = {
        "session_id": str(session.pk),
        "language": session.language,
        "sample_rate": session.sample_rate,
        "audio_ms": audio_ms,
        "audio_sha256": sha256,
        "segments": [
            {
                "segment_id": s.segment_id,
                "start_ms": s.start_ms,
                "end_ms": s.end_ms,
                "text": s.text,
                "speaker": s.speaker,
                "confidence": s.confidence,
            }
            for s in segments
        ],
    }
    audio_parts.json_write(
        storage_keys.transcript_json_key(session), json.dumps(transcript, ensure_ascii=False).encode()
    )
    with transaction.atomic():
        session = access_session(principal, session_id, for_update=True)
        if session.status in _OPEN:
            session.status = SessionStatus.ENDED
        session.ended_at = session.ended_at or timezone.now()
        session.audio_bytes = index.durable_bytes
        session.audio_duration_ms = audio_ms
        session.storage_key = wav_key
        session.audio_sha256 = sha256
        session.save(
            update_fields=["status", "ended_at", "audio_bytes", "audio_duration_ms", "storage_key", "audio_sha256"]
        )
        audit_record(
            clinic=principal.clinic,
            action=AuditAction.AUDIO_WRITE,
            object_type="session",
            object_id=session.pk,
            actor=principal,
            details={"audio_bytes": index.durable_bytes, "parts": index.part_count},
        )
        audit_record(
            clinic=principal.clinic,
            action=AuditAction.TRANSCRIPT_WRITE,
            object_type="session",
            object_id=session.pk,
            actor=principal,
            details={"segments": len(segments)},
        )
    if drop_parts:
        audio_parts.parts_delete([link.part for link in index.chain] + _stray_parts(session, index))
    log.info("session_sealed", session_id=str(session.pk), audio_bytes=index.durable_bytes, segments=len(segments))
    return SealResult(audio_bytes=index.durable_bytes, audio_ms=audio_ms, segments=len(segments), sha256=sha256)


def _stray_parts(session: ConsultationSession, index: audio_parts.PartsIndex) -> list[audio_parts.Part]:
    in_chain = {link.part.name for link in index.chain}
    return [p for p in audio_parts.parts_list(session) if p.name not in in_chain]


@dataclass
class ViewerStart:
    status: str
    sample_rate: int
    finals: list[dict]


def viewer_start(*, principal: Principal, session_id: object) -> ViewerStart:
    """The finals so far for a new viewer, and the LIVE_VIEW audit row."""
    session = access_session(principal, session_id)
    finals = [segment_payload(s) for s in segments_visible_to(principal, session).order_by("start_ms", "id")]
    audit_record(
        clinic=principal.clinic,
        action=AuditAction.LIVE_VIEW,
        object_type="session",
        object_id=session.pk,
        actor=principal,
        details={"finals": len(finals)},
    )
    return ViewerStart(status=session.status, sample_rate=session.sample_rate, finals=finals)


def segment_payload(s: TranscriptSegment | TranscriptEvent) -> dict:
    return {
        "type": "Transcript",
        "segment_id": s.segment_id,
        "revision": s.revision,
        "is_final": bool(s.is_final),
        "start_ms": s.start_ms,
        "end_ms": s.end_ms,
        "text": s.text,
        "speaker": s.speaker,
        "confidence": s.confidence,
    }
