"""Data lifecycle: ending abandoned live sessions, sealing ended sessions
whose audio was left in parts, retention purge and clinic export
(offboarding).

Both act as a system principal of one clinic at a time, go through the
access layer and the same services as user actions, and leave audit rows:
a purge leaves the erasure tombstones, an export one row per session read.
"""

import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.db.models import Max, Q
from django.utils import timezone

from clinics.access import Principal, audit_events_visible_to, sessions_visible_to, system_principal
from clinics.audit import AuditAction, audit_record
from clinics.models import Clinic
from sessions import storage_keys
from sessions.formats import speaker_roles, transcript_as_json, transcript_as_txt
from sessions.live import producer_attached
from sessions.models import ConsultationSession, SessionStatus
from sessions.selectors import transcript_finals
from sessions.services import session_end, session_erase, session_seal
from sessions.storage import storage_iter_range, storage_size
from voiceai.errors import DomainError
from voiceai.logging import get_logger

log = get_logger(__name__)


@dataclass
class PurgeReport:
    clinics: int = 0
    erased: int = 0
    failed: list[str] = field(default_factory=list)


def sessions_expired(*, principal: Principal, now: datetime) -> list[ConsultationSession]:
    """Sessions past the clinic's retention. Live sessions are never purged
    under a streaming clinician; they are caught by a later run."""
    cutoff = now - timedelta(days=principal.clinic.retention_days)
    return list(
        sessions_visible_to(principal)
        .filter(created_at__lt=cutoff)
        .exclude(status=SessionStatus.LIVE)
        .order_by("created_at")
    )


def sessions_purge_expired(*, now: datetime | None = None, dry_run: bool = False) -> PurgeReport:
    """Erase every session older than its clinic's retention. Safe to run
    from cron or a scheduled container repeatedly: what is gone stays gone,
    a storage failure leaves that session for the next run."""
    now = now or timezone.now()
    report = PurgeReport()
    for clinic in Clinic.objects.order_by("slug"):
        report.clinics += 1
        principal = system_principal(clinic, label="retention")
        for session in sessions_expired(principal=principal, now=now):
            if dry_run:
                report.erased += 1
                continue
            try:
                session_erase(principal=principal, session=session)
                report.erased += 1
            except DomainError as exc:
                report.failed.append(str(session.pk))
                log.warning(
                    "retention_purge_failed", clinic_id=str(clinic.pk), session_id=str(session.pk), code=exc.code
                )
    log.info("retention_purge_done", clinics=report.clinics, erased=report.erased, failed=len(report.failed))
    return report


@dataclass
class ReapReport:
    ended: int = 0
    # Sessions left live because their state could not be checked or ended;
    # the next run retries them.
    failed: list[str] = field(default_factory=list)


def _last_stream_activity(*, principal: Principal, sessions: list[ConsultationSession]) -> dict[str, datetime]:
    """The latest ``stream.start``/``stream.stop`` audit time per session id:
    one grouped query per clinic, on the (clinic, object_type, object_id) index."""
    rows = (
        audit_events_visible_to(principal)
        .filter(
            object_type="session",
            object_id__in=[str(s.pk) for s in sessions],
            action__in=[AuditAction.STREAM_START, AuditAction.STREAM_STOP],
        )
        .values("object_id")
        .annotate(last=Max("created_at"))
    )
    return {row["object_id"]: row["last"] for row in rows}


def sessions_abandoned(*, principal: Principal, now: datetime, idle_minutes: float) -> list[ConsultationSession]:
    """Streamed sessions still ``live`` with no stream start or stop for
    ``idle_minutes`` (nor a start, for sessions never connected since).
    Whether a producer still holds the lease is the caller's check (live
    store). Batch sessions are live while their job runs and have no stream."""
    cutoff = now - timedelta(minutes=idle_minutes)
    candidates = list(
        sessions_visible_to(principal)
        .filter(status=SessionStatus.LIVE)
        .exclude(source="batch")
        .filter(Q(started_at__lt=cutoff) | Q(started_at__isnull=True, created_at__lt=cutoff))
        .order_by("created_at")
    )
    if not candidates:
        return []
    activity = _last_stream_activity(principal=principal, sessions=candidates)
    abandoned = []
    for session in candidates:
        since = session.started_at or session.created_at
        if max(activity.get(str(session.pk), since), since) < cutoff:
            abandoned.append(session)
    return abandoned


def sessions_reap_abandoned(*, now: datetime | None = None, idle_minutes: float | None = None) -> ReapReport:
    """End every live session whose producer disconnected and did not come
    back within its clinic's grace (``Clinic.producer_grace_minutes``), so
    the clinic's concurrent slot is free and the audio is sealed (and
    retention, which skips live sessions, can reach it later).

    Everything it decides on is shared state, not a timer in the process
    that served the stream: the last ``stream.start``/``stream.stop`` audit
    row (PostgreSQL) and the producer lease (Redis). So any process may run
    it, a restarted one included (``transcription/reaper.py`` runs it every
    minute in each server process under a cluster-wide lock; cron can run
    ``purge_expired_sessions`` too). A session whose producer holds its
    lease is streaming, however long ago it started, and is left alone; so
    is one whose lease can't be checked (Redis down): "unknown" must never
    read as "nobody". Ending goes through ``session_end``, which seals the
    audio from its parts after commit. ``idle_minutes`` overrides every
    clinic's grace (tests)."""
    now = now or timezone.now()
    report = ReapReport()
    for clinic in Clinic.objects.order_by("slug"):
        principal = system_principal(clinic, label="abandoned")
        grace = clinic.producer_grace_minutes if idle_minutes is None else idle_minutes
        for session in sessions_abandoned(principal=principal, now=now, idle_minutes=grace):
            try:
                if producer_attached(clinic_id=clinic.pk, session_id=session.pk):
                    continue
                session_end(principal=principal, session=session)
                report.ended += 1
            except Exception as exc:  # Redis or a domain refusal: retried next run
                report.failed.append(str(session.pk))
                log.warning(
                    "abandoned_reap_failed",
                    clinic_id=str(clinic.pk),
                    session_id=str(session.pk),
                    error=type(exc).__name__,
                )
    if report.ended or report.failed:  # it runs every minute: quiet when there is nothing to say
        log.info("abandoned_reap_done", ended=report.ended, failed=len(report.failed))
    return report


# An ended session's producer may still be finishing (engine drain, last
# flush, its own seal) for a few seconds; the reaper leaves it that long.
STRANDED_SEAL_GRACE = timedelta(minutes=5)


@dataclass
class SealReport:
    sealed: int = 0
    # Left for the next run: storage, Redis or the database failed.
    failed: list[str] = field(default_factory=list)


def sessions_unsealed(*, principal: Principal, now: datetime) -> list[ConsultationSession]:
    """Ended sessions that streamed but were never sealed: their
    acknowledged audio is only in parts, so it can't be downloaded and
    doesn't count towards usage. A stream's end seals its session, and so
    does a REST end after commit; a process that died in between, or the
    idle-producer bug of issue 10, left these behind."""
    return list(
        sessions_visible_to(principal)
        .filter(status=SessionStatus.ENDED, audio_sha256="", started_at__isnull=False)
        .filter(ended_at__lt=now - STRANDED_SEAL_GRACE)
        .exclude(source="batch")
        .order_by("ended_at")
    )


def sessions_seal_stranded(*, now: datetime | None = None) -> SealReport:
    """Seal every ended session left unsealed (WAV, sha256, transcript JSON,
    usage, the audit rows of a seal), through the same ``session_seal`` a
    stream's end uses. A session with no part at all is sealed too (an
    empty recording), so it is not looked at again. A producer still
    holding the lease is left to seal it itself; a failure is retried by
    the next run."""
    now = now or timezone.now()
    report = SealReport()
    for clinic in Clinic.objects.order_by("slug"):
        principal = system_principal(clinic, label="reaper")
        for session in sessions_unsealed(principal=principal, now=now):
            try:
                if producer_attached(clinic_id=clinic.pk, session_id=session.pk):
                    continue
                session_seal(principal=principal, session_id=session.pk)
                report.sealed += 1
            except Exception as exc:
                report.failed.append(str(session.pk))
                log.warning(
                    "stranded_seal_failed",
                    clinic_id=str(clinic.pk),
                    session_id=str(session.pk),
                    error=type(exc).__name__,
                )
    log.info("stranded_seal_done", sealed=report.sealed, failed=len(report.failed))
    return report


def clinic_export(*, clinic: Clinic, out_path: Path) -> int:
    """Write every session of the clinic (transcripts as JSON and text, the
    audio WAV where stored, and a manifest) into one ZIP archive. Returns
    the number of sessions exported."""
    principal = system_principal(clinic, label="export")
    manifest = []
    with zipfile.ZipFile(out_path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for session in sessions_visible_to(principal).order_by("created_at"):
            manifest.append(_export_session(archive, principal=principal, session=session))
        archive.writestr("manifest.json", json.dumps({"clinic": clinic.slug, "sessions": manifest}, indent=2))
    audit_record(
        clinic=clinic,
        action=AuditAction.CLINIC_EXPORT,
        object_type="clinic",
        object_id=clinic.pk,
        actor=principal,
        details={"sessions": len(manifest)},
    )
    return len(manifest)


def _export_session(archive: zipfile.ZipFile, *, principal: Principal, session: ConsultationSession) -> dict:
    folder = f"{session.pk}/"
    segments = list(transcript_finals(principal=principal, session=session))
    roles = speaker_roles((s.speaker for s in segments), session.speaker_roles)
    archive.writestr(
        folder + "transcript.json",
        transcript_as_json(segments, session_id=session.pk, language=session.language, roles=roles),
    )
    archive.writestr(folder + "transcript.txt", transcript_as_txt(segments, roles=roles, language=session.language))
    audit_record(
        clinic=principal.clinic,
        action=AuditAction.TRANSCRIPT_READ,
        object_type="session",
        object_id=session.pk,
        actor=principal,
        details={"via": "export", "segments": len(segments)},
    )
    wav_key = storage_keys.audio_wav_key(session)
    size = storage_size(wav_key)
    if size:
        with archive.open(folder + "audio.wav", "w", force_zip64=True) as out:
            for chunk in storage_iter_range(wav_key, start=0, length=size):
                out.write(chunk)
        audit_record(
            clinic=principal.clinic,
            action=AuditAction.AUDIO_READ,
            object_type="session",
            object_id=session.pk,
            actor=principal,
            details={"via": "export", "bytes": size},
        )
    return {
        "id": str(session.pk),
        "external_ref": session.external_ref,
        "status": session.status,
        "language": session.language,
        "created_at": session.created_at.isoformat(),
        "ended_at": session.ended_at.isoformat() if session.ended_at else None,
        "audio_duration_ms": session.audio_duration_ms,
        "audio_sha256": session.audio_sha256,
        "segments": len(segments),
        "audio": bool(size),
    }
