"""Every write on a consultation session and its transcript segments:
create, consent (record, withdraw), end, fail, erase, stream tokens, a producer's connect/flush/seal,
a viewer's start, batch uploads — and the audit row each one needs.

Keyword-only, each in one transaction with an audit row; events for live
sockets go out only after the transaction commits. ``SessionStatus`` is
assigned here and nowhere else. The realtime layer (``transcription``) calls
these from its sockets, once per connection or flush — never per frame —
through ``voiceai.db.db_async``; storage work runs in a worker thread too.
"""

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from clinics.access import (
    Principal,
    access_final_segment,
    access_session,
    access_session_id,
    ensure_clinic_active,
    require_admin,
    segments_visible_to,
)
from clinics.audit import AuditAction, audit_event, audit_insert_values, audit_record
from clinics.models import AuditEvent, Clinic, Language
from clinics.principals import IssuedToken, stream_token_issue
from sessions import audio_store, storage_keys
from sessions.audio import pcm_ms
from sessions.engine_support import clinic_engine, clinic_engine_languages
from sessions.events import session_ended, transcript_completed
from sessions.live import producer_attached
from sessions.models import (
    OPEN_STATUSES,
    ConsentMethod,
    ConsultationSession,
    SegmentRevision,
    SessionStatus,
    SpeakerRole,
    TranscriptSegment,
)
from sessions.selectors import (
    AUDIO_USAGE_MAX_AGE_SECONDS,
    clinic_audio_usage,
    transcript_finals,
)
from sessions.storage import storage_delete_prefix
from voiceai.errors import Conflict, ConsentRequired, InvalidInput, NotFound, QuotaExceeded, Unavailable
from voiceai.logging import get_logger

log = get_logger(__name__)

SAMPLE_RATE_MIN = 8000
SAMPLE_RATE_MAX = 48000
EXTERNAL_REF_MAX = 128
CONSENT_NOTE_MAX = 500
SEGMENT_TEXT_MAX = 10_000
SPEAKER_LABELS_MAX = 16
# Engines' labels (spk_0, ch_1): never free text, which could carry a name
# into the audit row that records them.
SPEAKER_LABEL_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,32}")


class RevisionConflict(Conflict):
    code = "revision_conflict"
    default_message = "The segment was changed since you read it. Read it again, then apply your correction."


class LiveStateUnavailable(Unavailable):
    code = "live_state_unavailable"
    default_message = "Could not check for a live recording; the session was not erased. Try again."


class StorageUnavailable(Unavailable):
    code = "storage_unavailable"
    default_message = "Storage is unavailable; the session was not erased. Try again."


class SessionEnded(Conflict):
    code = "session_ended"
    default_message = "The session has ended."


def _audit(principal: Principal, action: str, session_id: Any, **details: Any) -> None:
    """The audit row of an action on one session, by ``principal``."""
    audit_record(
        clinic=principal.clinic,
        action=action,
        object_type="session",
        object_id=session_id,
        actor=principal,
        details=details,
    )


def _engine_for(principal: Principal) -> str:
    return clinic_engine(principal.clinic)


def quota_ensure_available(*, clinic: Clinic, usage_max_age: float = 0.0) -> None:
    """Refuse new audio (429) when the clinic's audio minutes for this month
    or its storage are used up. Checked where audio starts: session create,
    batch upload and the producer socket's connect — never per frame. The
    connect accepts usage a few seconds old (``usage_max_age``): a reconnect
    storm would otherwise sum the clinic's sessions once per producer."""
    quota = getattr(clinic, "quota", None)  # no quota row: no limits to enforce
    if quota is None:
        return
    usage = clinic_audio_usage(clinic=clinic, max_age=usage_max_age)
    if usage.month_ms >= quota.audio_minutes_per_month * 60_000:
        raise QuotaExceeded("The clinic's audio minutes for this month are used up.", code="audio_minutes_exhausted")
    if usage.storage_bytes >= quota.storage_bytes:
        raise QuotaExceeded("The clinic's audio storage is full.", code="storage_quota_exceeded")


def quota_ensure_room(*, clinic: Clinic, audio_bytes: int, audio_ms: int) -> None:
    """Refuse a whole recording that arrives at once (a batch upload) when it
    does not fit in what is left of the clinic's storage (429
    ``storage_quota_exceeded``) or audio minutes (429
    ``audio_minutes_exhausted``), or is longer than the clinic's maximum
    session length (400 ``session_duration_exceeded``), which ends a live
    stream at the same length."""
    quota = getattr(clinic, "quota", None)
    if quota is None:
        return
    if quota.max_session_seconds and audio_ms > quota.max_session_seconds * 1000:
        raise InvalidInput(
            "The recording is longer than the clinic's maximum session length.",
            code="session_duration_exceeded",
            details={"max_session_seconds": quota.max_session_seconds, "audio_seconds": audio_ms // 1000},
        )
    usage = clinic_audio_usage(clinic=clinic, max_age=0)  # read now: the whole recording is decided at once
    if usage.storage_bytes + audio_bytes > quota.storage_bytes:
        raise QuotaExceeded(
            "The recording does not fit in the clinic's audio storage.",
            code="storage_quota_exceeded",
            details={"storage_bytes_left": max(0, quota.storage_bytes - usage.storage_bytes)},
        )
    if usage.month_ms + audio_ms > quota.audio_minutes_per_month * 60_000:
        raise QuotaExceeded(
            "The recording does not fit in the clinic's audio minutes for this month.",
            code="audio_minutes_exhausted",
        )


def language_ensure_supported(*, clinic: Clinic, language: str) -> None:
    """Refuse (400 ``language_not_supported``) a language the clinic's speech
    engine can't transcribe, before any audio: the offline engine knows
    English only, Japanese needs the aws engine."""
    supported = clinic_engine_languages(clinic)
    if language not in supported:
        raise InvalidInput(
            f"The clinic's speech engine ({clinic_engine(clinic)}) does not transcribe {language}. "
            "An administrator must switch the clinic to an engine that does (aws for Japanese).",
            code="language_not_supported",
            details={"language": language, "engine": clinic_engine(clinic), "supported_languages": supported},
        )


def _consent_errors(method: object, note: object, *, required: bool) -> dict[str, str]:
    errors: dict[str, str] = {}
    if method or required:
        if method not in ConsentMethod.values:
            errors["consent_method"] = f"Must be one of {', '.join(ConsentMethod.values)}."
    elif note:
        errors["consent_note"] = "A note needs a consent_method."
    if not isinstance(note, str) or len(note) > CONSENT_NOTE_MAX:
        errors["consent_note"] = f"Must be a string of at most {CONSENT_NOTE_MAX} characters."
    return errors


def _consent_apply(principal: Principal, session: ConsultationSession, *, method: str, note: str) -> list[str]:
    """Sets the consent fields (the caller saves them and writes the audit row)."""
    session.consent_method = method
    session.consent_note = note.strip()
    session.consent_recorded_at = timezone.now()
    session.consent_recorded_by = principal.label
    return ["consent_method", "consent_note", "consent_recorded_at", "consent_recorded_by"]


@transaction.atomic
def session_create(
    *,
    principal: Principal,
    external_ref: str = "",
    language: str | None = None,
    sample_rate: int = 16000,
    consent_method: str = "",
    consent_note: str = "",
) -> ConsultationSession:
    """A new session; with ``consent_method`` the patient's consent is
    recorded with it (one call for integrators whose own system asked)."""
    ensure_clinic_active(principal.clinic)
    language = language or principal.clinic.default_language
    errors: dict[str, str] = _consent_errors(consent_method, consent_note, required=False)
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
    language_ensure_supported(clinic=principal.clinic, language=language)
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
    _audit(principal, AuditAction.SESSION_CREATE, session.pk, language=language, engine=session.engine)
    if consent_method:
        session.save(update_fields=_consent_apply(principal, session, method=consent_method, note=consent_note))
        _audit(principal, AuditAction.CONSENT_RECORD, session.pk, method=consent_method, note=bool(consent_note))
    log.info("session_created", clinic_id=str(principal.clinic.pk), session_id=str(session.pk))
    return session


@transaction.atomic
def consent_record(
    *, principal: Principal, session: ConsultationSession, method: str, note: str = ""
) -> ConsultationSession:
    """Records the patient's consent to this session's recording (who, when,
    how, an optional note — the note's text is never audited or logged).
    Once per session: a second record is a conflict (409
    ``consent_recorded``); withdrawing erases the session instead."""
    errors = _consent_errors(method, note, required=True)
    if errors:
        raise InvalidInput("The consent has invalid fields.", details=errors)
    session = access_session(principal, session.pk, for_update=True)
    if session.has_consent:
        raise Conflict("The patient's consent is already recorded for this session.", code="consent_recorded")
    session.save(update_fields=_consent_apply(principal, session, method=method, note=note))
    _audit(principal, AuditAction.CONSENT_RECORD, session.pk, method=method, note=bool(session.consent_note))
    return session


def consent_withdraw(*, principal: Principal, session: ConsultationSession) -> dict[str, int]:
    """The patient withdraws consent: the session is ended if it is open,
    then erased like ``session_erase`` (audio, transcript, row; the audit
    tombstone stays, with ``reason: consent_withdrawn``). Unlike an
    administrative erasure any member of the clinic may carry it out: it is
    the patient's decision, relayed by whoever is with them. While the
    producer is still letting go of a session just ended this raises a
    retryable 409 ``session_streaming``; the session stays ended, and
    withdrawing again completes the erasure."""
    session = access_session(principal, session.pk)
    if session.status in OPEN_STATUSES:
        session = session_end(principal=principal, session=session)
    return _session_erase(principal, session, reason="consent_withdrawn")


def consent_ensure_for_audio(*, principal: Principal, consent_method: str) -> None:
    """Audio that arrives with its session (a batch upload) needs the
    consent in the same request when the clinic requires it."""
    if principal.clinic.consent_required and not consent_method:
        raise ConsentRequired("This clinic requires consent_method with an upload.")


def session_token_issue(*, principal: Principal, session: ConsultationSession) -> IssuedToken:
    """A fresh stream token (e.g. to reconnect); only for open sessions."""
    if session.status not in OPEN_STATUSES:
        raise Conflict("The session has ended.", code="session_ended")
    if session.source == "batch":
        raise Conflict("This session transcribes an uploaded file; it takes no stream.", code="batch_session")
    issued = stream_token_issue(principal=principal, session=session)
    _audit(principal, AuditAction.STREAM_TOKEN_ISSUE, session.pk)
    return issued


def _sealed_transcript_refresh(principal: Principal, session: ConsultationSession) -> None:
    """A sealed session's ``transcript.json`` follows its rows (a late final,
    a correction): rewritten inside the caller's transaction."""
    if session.audio_sha256:
        rows = list(transcript_finals(principal=principal, session=session))
        audio_store.transcript_json_write(
            session, rows, audio_ms=session.audio_duration_ms, sha256=session.audio_sha256
        )


def segment_correct(
    *, principal: Principal, session: ConsultationSession, segment_id: str, text: object, revision: object
) -> TranscriptSegment:
    """A clinician's correction of a final's text: a new revision of the
    segment (who, when, before, after in a ``SegmentRevision``), the
    engine's text kept in the history, the row carrying the latest text
    for every reader; audited (``transcript.correct``, never the text).

    ``revision`` is the revision the caller read: if the segment has moved
    on since (another correction), nothing changes and ``RevisionConflict``
    (409) says which revision it is at now. The same text again is no
    revision (the segment is returned as it is)."""
    errors: dict[str, str] = {}
    if not isinstance(text, str) or not text.strip() or len(text) > SEGMENT_TEXT_MAX:
        errors["text"] = f"Must be a non-empty string of at most {SEGMENT_TEXT_MAX} characters."
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
        errors["revision"] = "Must be the segment's revision you read (a non-negative integer)."
    if errors:
        raise InvalidInput("The correction has invalid fields.", details=errors)
    assert isinstance(text, str)
    text = text.strip()
    with transaction.atomic():
        segment = access_final_segment(principal, session, segment_id, for_update=True)
        if segment.revision != revision:
            raise RevisionConflict(details={"revision": segment.revision})
        if segment.text == text:
            return segment
        SegmentRevision.objects.create(
            clinic=principal.clinic,
            session=session,
            segment=segment,
            revision=segment.revision + 1,
            text_before=segment.text,
            text_after=text,
            edited_by=principal.label,
        )
        segment.text = text
        segment.revision += 1
        # A clinician who rewrote the line has checked it: its flag clears.
        segment.reviewed_by = principal.label
        segment.reviewed_at = timezone.now()
        segment.save(update_fields=["text", "revision", "reviewed_by", "reviewed_at"])
        audit_record(
            clinic=principal.clinic,
            action=AuditAction.TRANSCRIPT_CORRECT,
            object_type="transcript_segment",
            object_id=segment.pk,
            actor=principal,
            details={"session_id": str(session.pk), "segment_id": segment.segment_id, "revision": segment.revision},
        )
        _sealed_transcript_refresh(principal, access_session(principal, session.pk))
    log.info("segment_corrected", session_id=str(session.pk), revision=segment.revision)
    return segment


def segment_confirm(
    *, principal: Principal, session: ConsultationSession, segment_id: str, revision: object
) -> TranscriptSegment:
    """A clinician confirms a final as heard (the low-confidence review): who
    and when are stored on the segment, its review flag clears; audited
    (``transcript.confirm``, never the text). ``revision`` is the revision
    the caller read, as for a correction: confirming text that changed
    since is refused with ``RevisionConflict`` (409). Confirming again is a
    no-op (the first confirmation stays)."""
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
        raise InvalidInput(
            "The confirmation has invalid fields.",
            details={"revision": "Must be the segment's revision you read (a non-negative integer)."},
        )
    with transaction.atomic():
        segment = access_final_segment(principal, session, segment_id, for_update=True)
        if segment.revision != revision:
            raise RevisionConflict(details={"revision": segment.revision})
        if segment.reviewed_at is not None:
            return segment
        segment.reviewed_by = principal.label
        segment.reviewed_at = timezone.now()
        segment.save(update_fields=["reviewed_by", "reviewed_at"])
        audit_record(
            clinic=principal.clinic,
            action=AuditAction.TRANSCRIPT_CONFIRM,
            object_type="transcript_segment",
            object_id=segment.pk,
            actor=principal,
            details={"session_id": str(session.pk), "segment_id": segment.segment_id, "revision": segment.revision},
        )
    return segment


def speaker_roles_set(*, principal: Principal, session: ConsultationSession, roles: object) -> ConsultationSession:
    """Sets which role each speaker label is (``{"spk_0": "clinician",
    "spk_1": "patient"}``), replacing the mapping and with it the first
    guess; ``{}`` goes back to the guess. Any member of the clinic may (the
    clinician in the room knows who spoke). Labels are the engine's
    (``spk_0``); a label may be set before it is heard (a mapping chosen
    when starting). Audited (``session.speaker_roles``, labels and roles
    only); a sealed session's ``transcript.json`` is rewritten with them."""
    errors: dict[str, str] = {}
    if not isinstance(roles, dict) or len(roles) > SPEAKER_LABELS_MAX:
        errors["roles"] = f"Must be an object of at most {SPEAKER_LABELS_MAX} speaker labels."
    else:
        for label, role in roles.items():
            if not isinstance(label, str) or not SPEAKER_LABEL_PATTERN.fullmatch(label):
                errors["roles"] = "Labels are the engine's speaker labels, e.g. spk_0 (letters, digits, _ . : -)."
            elif role not in SpeakerRole.values:
                errors[f"roles.{label}"] = f"Must be one of {', '.join(SpeakerRole.values)}."
    if errors:
        raise InvalidInput("The speaker roles are invalid.", details=errors)
    assert isinstance(roles, dict)
    with transaction.atomic():
        session = access_session(principal, session.pk, for_update=True)
        session.speaker_roles = dict(sorted(roles.items()))
        session.speaker_roles_set_by = principal.label if roles else ""
        session.save(update_fields=["speaker_roles", "speaker_roles_set_by"])
        _audit(principal, AuditAction.SPEAKER_ROLES_SET, session.pk, roles=session.speaker_roles)
        _sealed_transcript_refresh(principal, session)
    return session


def segment_read(
    *, principal: Principal, session: ConsultationSession, segment_id: str
) -> tuple[TranscriptSegment, list[SegmentRevision]]:
    """One final segment with its corrections, audited as a transcript read."""
    segment = access_final_segment(principal, session, segment_id)
    revisions = list(segment.revisions.filter(clinic=principal.clinic).order_by("revision"))
    _audit(principal, AuditAction.TRANSCRIPT_READ, session.pk, format="segment", segments=1)
    return segment, revisions


def _notify_session_ended(clinic_id: Any, session_id: Any) -> None:
    """Tell live sockets of the session to close. Runs after commit; an
    outage of the relay must not turn a committed end into an error."""
    for _, result in session_ended.send_robust(sender=None, clinic_id=clinic_id, session_id=session_id):
        if isinstance(result, Exception):
            # The class name only: a connection error's text can carry the Redis URL.
            log.error(
                "session_end_notify_failed",
                clinic_id=str(clinic_id),
                session_id=str(session_id),
                error=type(result).__name__,
            )


def _notify_transcript_completed(clinic_id: Any, session_id: Any) -> None:
    """Tell other layers (notes) the transcript may be complete. Runs after
    commit; a receiver's failure must not undo what was committed."""
    for _, result in transcript_completed.send_robust(sender=None, clinic_id=clinic_id, session_id=session_id):
        if isinstance(result, Exception):
            log.error(
                "transcript_completed_notify_failed",
                clinic_id=str(clinic_id),
                session_id=str(session_id),
                error=type(result).__name__,
            )


def _on_commit_transcript_completed(session: ConsultationSession) -> None:
    clinic_id, session_id = session.clinic_id, session.pk
    transaction.on_commit(lambda: _notify_transcript_completed(clinic_id, session_id))


@transaction.atomic
def session_end(*, principal: Principal, session: ConsultationSession) -> ConsultationSession:
    """Ends an open session (idempotent for ended/failed sessions)."""
    session = access_session(principal, session.pk, for_update=True)
    if session.status not in OPEN_STATUSES:
        return session
    before = session.status
    session.status = SessionStatus.ENDED
    session.ended_at = timezone.now()
    session.save(update_fields=["status", "ended_at"])
    _audit(principal, AuditAction.SESSION_END, session.pk, **{"from": before})
    clinic_id, session_id = session.clinic_id, session.pk
    transaction.on_commit(lambda: _notify_session_ended(clinic_id, session_id))
    _on_commit_transcript_completed(session)
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
    try:
        session = access_session(principal, session_id)
        if producer_attached(clinic_id=session.clinic_id, session_id=session.pk):
            return
        if audio_store.parts_scan(session).part_count == 0:
            return
        session_seal(principal=principal, session_id=session_id, drop_parts=False)
    except Exception as exc:
        # Ending stands; the audio stays in parts (erasure still removes it).
        log.error("session_end_seal_failed", session_id=str(session_id), error=type(exc).__name__)


def _refuse_while_producer_attached(session: ConsultationSession) -> None:
    """A session ended over REST keeps its producer for a few seconds (engine
    drain, last flush, seal): the audio parts it writes then would outlive
    the erasure. Refused (409, retry) until it has let go of the session."""
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
    return _session_erase(principal, session)


def _session_erase(principal: Principal, session: ConsultationSession, *, reason: str = "") -> dict[str, int]:
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
        _, deleted = segments_visible_to(principal, session).delete()  # their corrections go with them
        segments = deleted.get(TranscriptSegment._meta.label, 0)
        session_id = session.pk
        session.delete()
        if reason == "consent_withdrawn":
            _audit(principal, AuditAction.CONSENT_WITHDRAW, session_id)
        _audit(
            principal,
            AuditAction.SESSION_ERASE,
            session_id,
            storage_objects=objects,
            segments=segments,
            **({"reason": reason} if reason else {}),
        )
    log.info("session_erased", clinic_id=str(principal.clinic.pk), session_id=str(session_id), objects=objects)
    return {"storage_objects": objects, "segments": segments}


def _read_origin(via: str | None, client: str | None) -> dict[str, str]:
    """Where a read came from, for its audit row: ``via`` the search or the
    MCP server, ``client`` the MCP client's own name (never the query)."""
    origin = {"via": via} if via else {}
    if client:
        origin["client"] = client[:64]
    return origin


def transcript_read(
    *, principal: Principal, session: ConsultationSession, fmt: str, via: str | None = None, client: str | None = None
) -> list[TranscriptSegment]:
    """The final segments (latest revisions) for a download or display,
    with the audit row every transcript read needs."""
    segments = list(transcript_finals(principal=principal, session=session))
    _audit(
        principal,
        AuditAction.TRANSCRIPT_READ,
        session.pk,
        format=fmt,
        segments=len(segments),
        **_read_origin(via, client),
    )
    return segments


@transaction.atomic
def transcript_search_audit(
    *, principal: Principal, segments: Sequence[TranscriptSegment], via: str = "search", client: str | None = None
) -> None:
    """A search shows pieces of transcripts: one ``transcript.read`` row per
    consultation whose segments it returned, with how many (no query text:
    it may name a patient's complaint)."""
    counts = Counter(str(segment.session_id) for segment in segments)
    for segment in segments:
        if segment.clinic_id != principal.clinic.pk:
            raise NotFound("Session not found.")
    for session_id, count in counts.items():
        _audit(
            principal,
            AuditAction.TRANSCRIPT_READ,
            session_id,
            format="search",
            segments=count,
            **_read_origin(via, client),
        )


def audio_read_audit(*, principal: Principal, session: ConsultationSession, start: int, end: int, size: int) -> None:
    """Records a read of bytes ``start``..``end`` (inclusive) of the audio."""
    if session.clinic_id != principal.clinic.pk:
        raise NotFound("Session not found.")
    _audit(
        principal, AuditAction.AUDIO_READ, session.pk, start=start, end=end, bytes=max(0, end - start + 1), size=size
    )


@transaction.atomic
def session_fail(*, principal: Principal, session_id: Any, reason: str) -> ConsultationSession:
    """Marks an open session failed with a short machine reason (an error
    code, never vendor text with data in it): the speech engine gave up on a
    live stream or a batch job. Its stored audio and finals stay.
    Idempotent: an ended or failed session is left as it is."""
    session = access_session(principal, session_id, for_update=True)
    if session.status not in OPEN_STATUSES:
        return session
    before = session.status
    session.status = SessionStatus.FAILED
    session.failure_reason = reason[:200]
    session.ended_at = timezone.now()
    session.save(update_fields=["status", "failure_reason", "ended_at"])
    _audit(principal, AuditAction.SESSION_FAIL, session.pk, **{"from": before, "reason": session.failure_reason})
    return session


# --- a producer's connection: start, finals, stop, seal ------------------------------------


@dataclass
class StreamStart:
    segments: int = 0
    last_final_end_ms: int = 0
    # Stored finals (segment id -> end ms) ending within ``recent_ms`` of the
    # last one: the only ones a replaying engine could produce again.
    recent_finals: dict[str, int] = field(default_factory=dict)
    # Stored finals the client has not received (``finals_received``), in
    # the order they were first sent.
    unreceived_finals: list[TranscriptSegment] = field(default_factory=list)


def stream_start(
    *,
    principal: Principal,
    session_id: object,
    resume_from_byte: int,
    takeover: bool,
    finals_received: int | None = None,
    recent_ms: int = 30_000,
) -> StreamStart:
    """Mark the session live and audit the connection. Returns what the
    stream must know of the finals already stored (never re-sent), and the
    stored finals after the first ``finals_received`` ones.

    A stream stores its finals in the order it sends them (one bulk insert
    per flush, then the same order on the socket), so what a client has
    received is a prefix of the stored finals in id order; the rest were
    stored when its connection was already gone (the flush after a drop).
    ``None``: the client did not say, nothing is re-sent.

    A connect costs one statement for a new session, a few small queries
    whatever the session's length for one that streamed before (a reconnect
    storm brings hundreds at once): the finals are summed up, and only the
    last ``recent_ms`` of them are read. Needs no transaction of its own (a
    caller's is joined): the session's one change and its audit row are one
    statement; the rest only reads, or audits a connect that changed nothing.

    Raises SessionEnded when the session is over, QuotaExceeded when the
    clinic's audio minutes or storage are used up (checked once per connect,
    before the session goes live or a stream.start is audited)."""
    details = {"resume_from_byte": resume_from_byte, "takeover": takeover}
    # Before the statement that writes: a refusal leaves nothing behind.
    quota_ensure_available(clinic=principal.clinic, usage_max_age=AUDIO_USAGE_MAX_AGE_SECONDS)
    went = _session_go_live(principal=principal, session_id=session_id, details={**details, "finals_resent": 0})
    if went is None:
        raise NotFound("Session not found.")
    if went.status not in OPEN_STATUSES:
        raise SessionEnded()
    started = StreamStart()
    if went.status != SessionStatus.CREATED:
        # The row the statement found, of this clinic (it read it by both). Each
        # read below is a snapshot of its own either way (READ COMMITTED): no
        # transaction around them.
        session = ConsultationSession(pk=access_session_id(session_id), clinic_id=principal.clinic.pk)
        finals = segments_visible_to(principal, session)
        started.segments, started.last_final_end_ms = went.segments, went.last_final_end_ms
        if started.segments:
            recent = finals.filter(end_ms__gte=started.last_final_end_ms - recent_ms)
            started.recent_finals = dict(recent.values_list("segment_id", "end_ms"))
        if finals_received is not None and finals_received < started.segments:
            started.unreceived_finals = list(finals.order_by("id")[finals_received:])
        _audit(principal, AuditAction.STREAM_START, session.pk, **details, finals_resent=len(started.unreceived_finals))
    return started


_GO_LIVE_SQL: dict[str, str] = {}


@dataclass(frozen=True)
class _GoLive:
    status: str  # the row's status before the statement
    segments: int  # its stored finals, and where the last one ends
    last_final_end_ms: int


def _session_go_live(*, principal: Principal, session_id: object, details: dict[str, Any]) -> _GoLive | None:
    """One statement for a producer's connect: lock the session's row (of
    the principal's clinic only), take a never-streamed session live, write
    its ``stream.start`` audit row (``details``), and sum up its stored
    finals. None: no such session in this clinic. A session that streamed
    before changes nothing here: its audit row says how many stored finals
    are re-sent, which the caller reads next.

    A reconnect storm runs this hundreds of times at once: the ORM's lock,
    UPDATE and INSERT cost three round trips and more CPU in SQL compilation
    than the database spends on them."""
    session_pk = access_session_id(session_id)
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        return _session_go_live_orm(principal=principal, session_pk=session_pk, details=details)
    event = audit_event(
        clinic=principal.clinic,
        action=AuditAction.STREAM_START,
        object_type="session",
        object_id=session_pk,
        actor=principal,
        details=details,
    )
    columns, audit_values = audit_insert_values(event, connection)
    sql = _GO_LIVE_SQL.get(connection.alias)
    if sql is None:
        table = connection.ops.quote_name(ConsultationSession._meta.db_table)
        audit_table = connection.ops.quote_name(AuditEvent._meta.db_table)
        segment_table = connection.ops.quote_name(TranscriptSegment._meta.db_table)
        end_col = connection.ops.quote_name(TranscriptSegment._meta.get_field("end_ms").column)
        sql = _GO_LIVE_SQL[connection.alias] = (
            f'WITH locked AS (SELECT s."id", s."status" FROM {table} s WHERE s."id" = %s AND s."clinic_id" = %s '  # noqa: S608 (names from model metadata; values are parameters)
            f"FOR UPDATE), "
            f'live AS (UPDATE {table} s SET "status" = %s, "started_at" = %s FROM locked '
            f'WHERE s."id" = locked."id" AND locked."status" = %s RETURNING 1), '
            f"audited AS (INSERT INTO {audit_table} ({', '.join(columns)}) "
            f'SELECT {", ".join(["%s"] * len(columns))} FROM locked WHERE locked."status" = %s RETURNING 1) '
            f'SELECT locked."status", f.n, f.last_end, (SELECT count(*) FROM live), (SELECT count(*) FROM audited) '
            f"FROM locked LEFT JOIN LATERAL (SELECT count(*) AS n, max(t.{end_col}) AS last_end FROM {segment_table} t "
            f'WHERE t."clinic_id" = %s AND t."session_id" = locked."id") f ON true'
        )
    params = [
        session_pk,
        principal.clinic.pk,
        SessionStatus.LIVE.value,
        timezone.now(),
        SessionStatus.CREATED.value,
        *audit_values,
        SessionStatus.CREATED.value,
        principal.clinic.pk,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return (
        None if row is None else _GoLive(status=row[0], segments=int(row[1] or 0), last_final_end_ms=int(row[2] or 0))
    )


def _session_go_live_orm(*, principal: Principal, session_pk: Any, details: dict[str, Any]) -> _GoLive | None:
    """``_session_go_live`` for SQLite (``make run``): the same, in a few
    ORM queries in one transaction."""
    with transaction.atomic():
        try:
            session = access_session(principal, session_pk, for_update=True)
        except NotFound:
            return None
        summary = segments_visible_to(principal, session).aggregate(count=Count("id"), last_end=Max("end_ms"))
        went = _GoLive(status=session.status, segments=summary["count"], last_final_end_ms=summary["last_end"] or 0)
        if session.status == SessionStatus.CREATED:
            session.status = SessionStatus.LIVE
            session.started_at = timezone.now()
            session.save(update_fields=["status", "started_at"])
            _audit(principal, AuditAction.STREAM_START, session.pk, **details)
    return went


class FinalLike(Protocol):
    """What a stored final needs (an engine's ``TranscriptEvent``)."""

    segment_id: str
    revision: int
    start_ms: int
    end_ms: int
    text: str
    speaker: str
    confidence: float | None


@dataclass(frozen=True)
class FinalsWrite:
    """One stream's pending finals, for ``finals_store_many``."""

    principal: Principal
    session_id: object
    finals: list[FinalLike]


def finals_store(*, principal: Principal, session_id: object, finals: list[FinalLike]) -> int:
    """Bulk-insert final segments in time order (one statement per flush).
    A segment id already stored is skipped by the unique constraint, never
    duplicated."""
    return finals_store_many([FinalsWrite(principal, session_id, finals)])


def finals_store_many(writes: list[FinalsWrite]) -> int:
    """The finals of several sessions in one statement: the streams of a
    process store theirs together (the group commit in
    ``transcription/flusher.py``) instead of one transaction each. Each row
    belongs to its own write's clinic and session, which the stream that
    holds them was authorised for."""
    rows = [
        TranscriptSegment(
            clinic=w.principal.clinic,
            session_id=w.session_id,
            segment_id=f.segment_id[:100],
            revision=f.revision,
            start_ms=max(0, f.start_ms),
            end_ms=max(0, f.end_ms),
            text=f.text,
            speaker=f.speaker[:32],
            confidence=f.confidence,
            is_final=True,
        )
        for w in writes
        for f in sorted(w.finals, key=lambda f: (f.start_ms, f.end_ms))
    ]
    if rows:
        TranscriptSegment.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def finals_store_late(*, principal: Principal, session_id: object, finals: list[FinalLike]) -> None:
    """Finals that arrived after the producer sealed the session (a slow
    upstream caught up): stored, audited and, for a sealed session, written
    into its ``transcript.json`` — in one transaction, so readers see the
    rows, the document and the audit row together, never the rows alone."""
    with transaction.atomic():
        finals_store(principal=principal, session_id=session_id, finals=finals)
        session = access_session(principal, session_id)
        _sealed_transcript_refresh(principal, session)
        _audit(principal, AuditAction.TRANSCRIPT_WRITE, session.pk, late_segments=len(finals))
    log.info("late_finals_stored", session_id=str(session.pk), segments=len(finals))


def stream_stop(*, principal: Principal, session_id: object, reason: str, bytes_received: int, durable: int) -> None:
    _audit(
        principal,
        AuditAction.STREAM_STOP,
        session_id,
        reason=reason,
        bytes_received=bytes_received,
        audio_bytes_durable=durable,
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
    index = audio_store.parts_scan(session)
    if index.part_count == 0 and session.audio_sha256:
        return SealResult(
            audio_bytes=session.audio_bytes,
            audio_ms=session.audio_duration_ms,
            segments=segments_visible_to(principal, session).count(),
            sha256=session.audio_sha256,
        )
    wav_key, sha256 = audio_store.wav_write(session, index=index, sample_rate=session.sample_rate)
    segments = list(segments_visible_to(principal, session).order_by("start_ms", "id"))
    audio_ms = pcm_ms(index.durable_bytes, session.sample_rate)
    audio_store.transcript_json_write(session, segments, audio_ms=audio_ms, sha256=sha256)
    with transaction.atomic():
        session = access_session(principal, session_id, for_update=True)
        if session.status in OPEN_STATUSES:
            session.status = SessionStatus.ENDED
        session.ended_at = session.ended_at or timezone.now()
        session.audio_bytes = index.durable_bytes
        session.audio_duration_ms = audio_ms
        session.storage_key = wav_key
        session.audio_sha256 = sha256
        session.save(
            update_fields=["status", "ended_at", "audio_bytes", "audio_duration_ms", "storage_key", "audio_sha256"]
        )
        _audit(principal, AuditAction.AUDIO_WRITE, session.pk, audio_bytes=index.durable_bytes, parts=index.part_count)
        _audit(principal, AuditAction.TRANSCRIPT_WRITE, session.pk, segments=len(segments))
        _on_commit_transcript_completed(session)
    if drop_parts:
        audio_store.parts_delete([link.part for link in index.chain] + _stray_parts(session, index))
    log.info("session_sealed", session_id=str(session.pk), audio_bytes=index.durable_bytes, segments=len(segments))
    return SealResult(audio_bytes=index.durable_bytes, audio_ms=audio_ms, segments=len(segments), sha256=sha256)


def _stray_parts(session: ConsultationSession, index: audio_store.PartsIndex) -> list[audio_store.Part]:
    in_chain = {link.part.name for link in index.chain}
    return [p for p in audio_store.parts_list(session) if p.name not in in_chain]


@dataclass
class ViewerStart:
    status: str
    sample_rate: int
    finals: list[TranscriptSegment]


def viewer_start(*, principal: Principal, session_id: object, with_finals: bool = True) -> ViewerStart:
    """The finals so far for a new viewer (none for one that resumes from
    the live events it has), and the LIVE_VIEW audit row."""
    session = access_session(principal, session_id)
    finals = list(segments_visible_to(principal, session).order_by("start_ms", "id")) if with_finals else []
    _audit(principal, AuditAction.LIVE_VIEW, session.pk, finals=len(finals), resumed=not with_finals)
    return ViewerStart(status=session.status, sample_rate=session.sample_rate, finals=finals)


# --- batch uploads ----------------------------------------------------------------------


def batch_session_create(
    *,
    principal: Principal,
    sample_rate: int,
    audio_bytes: int,
    wav: Any,
    wav_sha256: str,
    language: str | None,
    external_ref: str,
    consent_method: str = "",
    consent_note: str = "",
) -> ConsultationSession:
    """The session of an uploaded WAV (``source="batch"``), live at once, its
    audio stored as the session's WAV. ``wav`` is a file object that storage
    copies piece by piece (``audio_bytes`` of samples behind the header).
    Call inside the caller's transaction: the WAV is written inside it, so if
    storage fails no session is left pointing at missing audio (S3 is not
    rolled back, but nothing refers to it)."""
    consent_ensure_for_audio(principal=principal, consent_method=consent_method)
    session = session_create(
        principal=principal,
        external_ref=external_ref,
        language=language,
        sample_rate=sample_rate,
        consent_method=consent_method,
        consent_note=consent_note,
    )
    session.storage_key = audio_store.wav_store(session, wav)
    session.source = "batch"
    session.status = SessionStatus.LIVE
    session.started_at = timezone.now()
    session.audio_bytes = audio_bytes
    session.audio_duration_ms = pcm_ms(audio_bytes, sample_rate)
    session.audio_sha256 = wav_sha256
    session.save(
        update_fields=[
            "source", "status", "started_at", "storage_key", "audio_bytes", "audio_duration_ms", "audio_sha256",
        ]
    )  # fmt: skip
    _audit(principal, AuditAction.AUDIO_WRITE, session.pk, source="batch", audio_bytes=session.audio_bytes)
    return session


def batch_progress_save(*, session_id: Any, progress: int) -> None:
    ConsultationSession.objects.filter(pk=session_id, status=SessionStatus.LIVE).update(progress=progress)


@transaction.atomic
def batch_finish(*, principal: Principal, session_id: Any, finals: list[FinalLike]) -> None:
    """A batch job's finals stored, its ``transcript.json`` written and the
    session ended (unless it was ended or failed meanwhile)."""
    session = access_session(principal, session_id, for_update=True)
    stored = finals_store(principal=principal, session_id=session.pk, finals=finals)
    rows = list(transcript_finals(principal=principal, session=session))
    audio_store.transcript_json_write(session, rows, audio_ms=session.audio_duration_ms, sha256=session.audio_sha256)
    if session.status == SessionStatus.LIVE:
        session.status = SessionStatus.ENDED
        session.ended_at = timezone.now()
    session.progress = 100
    session.save(update_fields=["status", "ended_at", "progress"])
    _audit(principal, AuditAction.TRANSCRIPT_WRITE, session.pk, source="batch", segments=stored)
    _on_commit_transcript_completed(session)
    log.info("batch_finished", session_id=str(session.pk), segments=stored)


@dataclass(frozen=True)
class ImportedFinal:
    """A final of a consultation transcribed elsewhere (``session_import``)."""

    segment_id: str
    start_ms: int
    end_ms: int
    text: str
    speaker: str = ""
    revision: int = 0
    confidence: float | None = None


@transaction.atomic
def session_import(
    *,
    principal: Principal,
    language: str,
    external_ref: str,
    finals: list[FinalLike],
    consent_method: str = "",
) -> ConsultationSession:
    """A consultation recorded and transcribed elsewhere, stored ended with
    its finals and no audio (``source="import"``; seed_demo's demo
    consultations). Unlike ``session_create`` the clinic's engine need not
    transcribe the language: nothing is transcribed here."""
    ensure_clinic_active(principal.clinic)
    errors = _consent_errors(consent_method, "", required=principal.clinic.consent_required)
    if language not in Language.values:
        errors["language"] = f"Must be one of {', '.join(Language.values)}."
    if not isinstance(external_ref, str) or len(external_ref) > EXTERNAL_REF_MAX:
        errors["external_ref"] = f"Must be a string of at most {EXTERNAL_REF_MAX} characters."
    if errors:
        raise InvalidInput("The session has invalid fields.", details=errors)
    now = timezone.now()
    session = ConsultationSession.objects.create(
        clinic=principal.clinic,
        created_by=principal.user if principal.user is not None and principal.user.pk else None,
        created_by_api_key=principal.api_key,
        external_ref=external_ref,
        language=language,
        engine="import",
        source="import",
        status=SessionStatus.ENDED,
        started_at=now,
        ended_at=now,
    )
    _audit(principal, AuditAction.SESSION_CREATE, session.pk, language=language, engine=session.engine)
    if consent_method:
        session.save(update_fields=_consent_apply(principal, session, method=consent_method, note=""))
        _audit(principal, AuditAction.CONSENT_RECORD, session.pk, method=consent_method, note=False)
    stored = finals_store(principal=principal, session_id=session.pk, finals=finals)
    _audit(principal, AuditAction.TRANSCRIPT_WRITE, session.pk, source="import", segments=stored)
    return session
