"""Writes on consultation sessions: create, end, erase, stream tokens.

Keyword-only, each in one transaction with an audit row; events for live
sockets go out only after the transaction commits.
"""

from typing import Any

from asgiref.sync import async_to_sync
from botocore.exceptions import BotoCoreError, ClientError
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clinics.access import Principal, access_session, ensure_clinic_active, require_admin, segments_visible_to
from clinics.audit import AuditAction, audit_record
from clinics.models import Clinic, Language
from sessions import storage_keys
from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment
from sessions.selectors import clinic_usage, transcript_finals
from sessions.storage import storage_delete_prefix
from sessions.tokens import IssuedToken, stream_token_issue
from transcription.groups import session_group
from voiceai.errors import Conflict, DomainError, InvalidInput, NotFound, QuotaExceeded
from voiceai.logging import get_logger

log = get_logger(__name__)

SAMPLE_RATE_MIN = 8000
SAMPLE_RATE_MAX = 48000
EXTERNAL_REF_MAX = 128
_OPEN = (SessionStatus.CREATED, SessionStatus.LIVE)


class LiveStateUnavailable(DomainError):
    status = 503
    code = "live_state_unavailable"
    default_message = "Could not check for a live recording; the session was not erased. Try again."


class StorageUnavailable(DomainError):
    status = 503
    code = "storage_unavailable"
    default_message = "Storage is unavailable; the session was not erased. Try again."


def _engine_for(principal: Principal) -> str:
    return principal.clinic.transcription_engine or settings.TRANSCRIPTION_ENGINE


def quota_ensure_available(*, clinic: Clinic) -> None:
    """Refuse new audio (429) when the clinic's audio minutes for this month
    or its storage are used up. Checked where audio starts: session create,
    batch upload and the producer socket's connect — never per frame."""
    quota = getattr(clinic, "quota", None)  # no quota row: no limits to enforce
    if quota is None:
        return
    usage = clinic_usage(clinic=clinic)
    if usage["audio_minutes_this_month"] >= quota.audio_minutes_per_month:
        raise QuotaExceeded("The clinic's audio minutes for this month are used up.", code="audio_minutes_exhausted")
    if usage["storage_bytes"] >= quota.storage_bytes:
        raise QuotaExceeded("The clinic's audio storage is full.", code="storage_quota_exceeded")


@transaction.atomic
def session_create(
    *,
    principal: Principal,
    external_ref: str = "",
    language: str | None = None,
    sample_rate: int = 16000,
) -> ConsultationSession:
    ensure_clinic_active(principal.clinic)
    language = language or principal.clinic.default_language
    errors: dict[str, str] = {}
    if language not in Language.values:
        errors["language"] = f"Must be one of {', '.join(Language.values)}."
    if (
        not isinstance(sample_rate, int)
        or isinstance(sample_rate, bool)
        or not (SAMPLE_RATE_MIN <= sample_rate <= SAMPLE_RATE_MAX)
    ):
        errors["sample_rate"] = f"Must be an integer from {SAMPLE_RATE_MIN} to {SAMPLE_RATE_MAX}."
    if not isinstance(external_ref, str) or len(external_ref) > EXTERNAL_REF_MAX:
        errors["external_ref"] = f"Must be a string of at most {EXTERNAL_REF_MAX} characters."
    if errors:
        raise InvalidInput("The session has invalid fields.", details=errors)
    quota_ensure_available(clinic=principal.clinic)
    session = ConsultationSession.objects.create(
        clinic=principal.clinic,
        created_by=principal.user if principal.user is not None and principal.user.pk else None,
        created_by_api_key=principal.api_key,
        external_ref=external_ref,
        language=language,
        engine=_engine_for(principal),
        sample_rate=sample_rate,
    )
    audit_record(
        clinic=principal.clinic,
        action=AuditAction.SESSION_CREATE,
        object_type="session",
        object_id=session.pk,
        actor=principal,
        details={"language": language, "engine": session.engine},
    )
    log.info("session_created", clinic_id=str(principal.clinic.pk), session_id=str(session.pk))
    return session


def session_token_issue(*, principal: Principal, session: ConsultationSession) -> IssuedToken:
    """A fresh stream token (e.g. to reconnect); only for open sessions."""
    if session.status not in _OPEN:
        raise Conflict("The session has ended.", code="session_ended")
    if session.source == "batch":
        raise Conflict("This session transcribes an uploaded file; it takes no stream.", code="batch_session")
    issued = stream_token_issue(principal=principal, session=session)
    audit_record(
        clinic=principal.clinic,
        action=AuditAction.STREAM_TOKEN_ISSUE,
        object_type="session",
        object_id=session.pk,
        actor=principal,
    )
    return issued


def _notify_session_ended(clinic_id: Any, session_id: Any) -> None:
    """Tell live sockets of the session to close. Runs after commit; a
    channel layer outage must not turn a committed end into an error."""
    try:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(session_group(clinic_id, session_id), {"type": "session.ended"})
    except Exception as exc:
        # The class name only: a connection error's text can carry the Redis URL.
        log.error(
            "session_end_notify_failed", clinic_id=str(clinic_id), session_id=str(session_id), error=type(exc).__name__
        )


@transaction.atomic
def session_end(*, principal: Principal, session: ConsultationSession) -> ConsultationSession:
    """Ends an open session (idempotent for ended/failed sessions)."""
    session = access_session(principal, session.pk, for_update=True)
    if session.status not in _OPEN:
        return session
    before = session.status
    session.status = SessionStatus.ENDED
    session.ended_at = timezone.now()
    session.save(update_fields=["status", "ended_at"])
    audit_record(
        clinic=principal.clinic,
        action=AuditAction.SESSION_END,
        object_type="session",
        object_id=session.pk,
        actor=principal,
        details={"from": before},
    )
    clinic_id, session_id = session.clinic_id, session.pk
    transaction.on_commit(lambda: _notify_session_ended(clinic_id, session_id))
    if before == SessionStatus.LIVE:
        transaction.on_commit(lambda: _seal_if_abandoned(principal, session_id))
    return session


def _seal_if_abandoned(principal: Principal, session_id: Any) -> None:
    """A live session ended with no producer attached (its client dropped
    earlier) has its acknowledged audio only in parts, and nobody else would
    write its WAV, sha256 and transcript JSON: without this its audio could
    not be read and did not count towards usage. An attached producer seals
    on ``session.ended`` itself. Parts are kept (``drop_parts=False``) in
    case a producer is still finishing elsewhere; erasure removes them."""
    from transcription import audio_parts
    from transcription.live_state import producer_attached
    from transcription.persistence import session_seal

    try:
        session = access_session(principal, session_id)
        if producer_attached(clinic_id=session.clinic_id, session_id=session.pk):
            return
        if audio_parts.parts_scan(session).part_count == 0:
            return
        session_seal(principal=principal, session_id=session_id, drop_parts=False)
    except Exception as exc:
        # Ending stands; the audio stays in parts (erasure still removes it).
        log.error("session_end_seal_failed", session_id=str(session_id), error=type(exc).__name__)


def _refuse_while_producer_attached(session: ConsultationSession) -> None:
    """A session ended over REST keeps its producer for a few seconds (engine
    drain, last flush, seal): the audio parts it writes then would outlive
    the erasure. Refused (409, retry) until it has let go of the session."""
    from transcription.live_state import producer_attached

    try:
        attached = producer_attached(clinic_id=session.clinic_id, session_id=session.pk)
    except Exception as exc:
        log.error("session_erase_live_state_failed", session_id=str(session.pk), error=type(exc).__name__)
        raise LiveStateUnavailable() from exc
    if attached:
        raise Conflict(
            "The recording connection is still finishing; try again in a few seconds.", code="session_streaming"
        )


def session_erase(*, principal: Principal, session: ConsultationSession) -> dict[str, int]:
    """Erasure: every storage object under the session's prefix, the
    transcript rows and the session row go; an audit tombstone stays.

    Storage goes first: if it fails, nothing in the database has changed and
    the erasure can be retried; the reverse order could leave audio behind
    with no row pointing at it. A live session must be ended first, or its
    stream would keep writing parts after the erasure. Erasing medical
    records is a clinic admin's decision, not every clinician's.
    """
    session = access_session(principal, session.pk)
    require_admin(principal)
    if session.status == SessionStatus.LIVE:
        raise Conflict("End the live session before erasing it.", code="session_live")
    _refuse_while_producer_attached(session)
    try:
        objects = storage_delete_prefix(storage_keys.session_prefix(session))
    except (OSError, BotoCoreError, ClientError) as exc:
        log.error("session_erase_storage_failed", session_id=str(session.pk), error=type(exc).__name__)
        raise StorageUnavailable() from exc
    with transaction.atomic():
        session = access_session(principal, session.pk, for_update=True)
        if session.status == SessionStatus.LIVE:  # went live meanwhile
            raise Conflict("End the live session before erasing it.", code="session_live")
        segments, _ = segments_visible_to(principal, session).delete()
        session_id = session.pk
        session.delete()
        audit_record(
            clinic=principal.clinic,
            action=AuditAction.SESSION_ERASE,
            object_type="session",
            object_id=session_id,
            actor=principal,
            details={"storage_objects": objects, "segments": segments},
        )
    log.info("session_erased", clinic_id=str(principal.clinic.pk), session_id=str(session_id), objects=objects)
    return {"storage_objects": objects, "segments": segments}


def transcript_read(*, principal: Principal, session: ConsultationSession, fmt: str) -> list[TranscriptSegment]:
    """The final segments for a download or display, with the audit row
    every transcript read needs."""
    segments = list(transcript_finals(principal=principal, session=session))
    audit_record(
        clinic=principal.clinic,
        action=AuditAction.TRANSCRIPT_READ,
        object_type="session",
        object_id=session.pk,
        actor=principal,
        details={"format": fmt, "segments": len(segments)},
    )
    return segments


def audio_read_audit(*, principal: Principal, session: ConsultationSession, start: int, end: int, size: int) -> None:
    """Records a read of bytes ``start``..``end`` (inclusive) of the audio."""
    if session.clinic_id != principal.clinic.pk:
        raise NotFound("Session not found.")
    audit_record(
        clinic=principal.clinic,
        action=AuditAction.AUDIO_READ,
        object_type="session",
        object_id=session.pk,
        actor=principal,
        details={"start": start, "end": end, "bytes": max(0, end - start + 1), "size": size},
    )
