"""The note job: claim a due note, read its transcript, run the engine,
store the draft or the failure.

The queue is the ``ClinicalNote`` table (``status`` queued/generating,
``run_after``, ``lease_expires_at``): a claim is one short transaction
(``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, then a conditional
UPDATE that also counts the attempt), so two processes never run the same
job. The attempt number is the claim's token: a job whose lease expired
and was taken up elsewhere finds its row moved on and stores nothing. The
queue spans every clinic by design; once claimed, a job reads and writes
only as a system principal of its note's clinic, through the access layer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from clinics.access import access_session, system_principal
from clinics.audit import AuditAction, audit_record
from clinics.models import Clinic
from notes.engines import get_note_engine
from notes.engines.base import NoteDraft, NoteEngineError, NoteRequest
from notes.models import SECTION_KEYS, ClinicalNote, NoteStatus
from notes.selectors import note_source
from notes.services import note_draft_save, note_job_failed, note_request_auto
from voiceai.errors import NotFound
from voiceai.logging import get_logger

log = get_logger(__name__)

JOBS_PER_RUN = 20


def note_request_on_transcript_completed(sender: object, *, clinic_id: Any, session_id: Any, **kwargs: Any) -> None:
    """``sessions.events.transcript_completed``: queue the session's draft."""
    note_request_auto(clinic_id=clinic_id, session_id=session_id)


def note_jobs_recover_stale(*, now: datetime | None = None) -> int:
    """Jobs whose process stopped mid-generation (their lease expired) go
    back to the queue, or to ``failed`` (``note_job_lost``) once they used
    their attempts: a restart resumes them, never leaves them generating."""
    now = now or timezone.now()
    stale = ClinicalNote.objects.filter(status=NoteStatus.GENERATING, lease_expires_at__lt=now)
    requeued = stale.filter(attempts__lt=settings.NOTES_MAX_ATTEMPTS).update(
        status=NoteStatus.QUEUED,
        run_after=now,
        lease_expires_at=None,
        progress=0,
        error_code="note_job_interrupted",
        error_retryable=True,
        updated_at=now,
    )
    lost = stale.update(
        status=NoteStatus.FAILED,
        lease_expires_at=None,
        error_code="note_job_lost",
        error_retryable=True,
        updated_at=now,
    )
    if requeued or lost:
        log.warning("note_jobs_recovered", requeued=requeued, failed=lost)
    return requeued + lost


def note_job_claim(*, now: datetime | None = None) -> ClinicalNote | None:
    """The next due queued job, now ``generating`` under this caller's
    lease with its attempt counted; None when nothing is due."""
    now = now or timezone.now()
    with transaction.atomic():
        due = ClinicalNote.objects.filter(status=NoteStatus.QUEUED, run_after__lte=now).order_by("run_after", "pk")
        if transaction.get_connection().features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        for candidate in due.only("pk")[:5]:
            claimed = ClinicalNote.objects.filter(pk=candidate.pk, status=NoteStatus.QUEUED).update(
                status=NoteStatus.GENERATING,
                attempts=F("attempts") + 1,
                progress=5,
                lease_expires_at=now + timedelta(seconds=settings.NOTES_JOB_LEASE_SECONDS),
                updated_at=now,
            )
            if claimed:
                return ClinicalNote.objects.select_related("clinic").get(pk=candidate.pk)
    return None


def note_jobs_run_due(*, now: datetime | None = None, limit: int = JOBS_PER_RUN) -> int:
    """Recover stale jobs, then claim and run due ones (at most ``limit``)
    in this thread. Returns how many ran."""
    note_jobs_recover_stale(now=now)
    ran = 0
    while ran < limit:
        note = note_job_claim(now=now)
        if note is None:
            break
        note_job_run(note)
        ran += 1
    return ran


def _check_draft(draft: NoteDraft, segment_ids: set[str]) -> None:
    """A draft may only cite the transcript's own segments, and every
    sentence must cite one: the evidence is what the clinician checks."""
    for key, sentences in draft.sections.items():
        if key not in SECTION_KEYS:
            raise NoteEngineError("unknown section", code="note_output_invalid")
        for sentence in sentences:
            if not sentence.text.strip() or not sentence.evidence:
                raise NoteEngineError("sentence without text or evidence", code="note_output_invalid")
            if not set(sentence.evidence) <= segment_ids:
                raise NoteEngineError("evidence outside the transcript", code="note_output_invalid")


def note_job_run(note: ClinicalNote) -> str:
    """Run one claimed job to its end: the draft stored, or the failure
    recorded (retry later or ``failed``). Returns the note's new status."""
    clinic: Clinic = note.clinic
    principal = system_principal(clinic, label="notes")
    try:
        session = access_session(principal, note.session_id)
    except NotFound:
        return ""  # the session (and with it the note) was erased meanwhile
    source = note_source(principal=principal, session=session)
    # The engine is given the transcript: a read like any other, audited.
    audit_record(
        clinic=clinic,
        action=AuditAction.TRANSCRIPT_READ,
        object_type="session",
        object_id=session.pk,
        actor=principal,
        details={"format": "note", "segments": len(source.segments), "engine": note.engine},
    )
    request = NoteRequest(language=note.language, segments=source.segments)
    input_chars = sum(len(s.text) for s in source.segments)

    def progress(percent: int) -> None:
        ClinicalNote.objects.filter(pk=note.pk, status=NoteStatus.GENERATING, attempts=note.attempts).update(
            progress=max(5, min(99, percent))
        )

    try:
        draft = get_note_engine(note.engine).generate(request, progress=progress)
        _check_draft(draft, {s.segment_id for s in source.segments})
    except NoteEngineError as exc:
        return note_job_failed(note=note, error=exc, input_chars=input_chars)
    except Exception as exc:
        # A bug or a database error: visible and retryable, never a job
        # left generating. The class name only: messages can carry data.
        log.error("note_job_crashed", note_id=str(note.pk), error=type(exc).__name__)
        return note_job_failed(
            note=note, error=NoteEngineError("internal", code="internal_error", retryable=True), input_chars=0
        )
    stored = note_draft_save(note=note, draft=draft, fingerprint=source.fingerprint)
    return NoteStatus.DRAFT if stored else ""
