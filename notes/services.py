"""Every write on a clinical note: asking for a draft (automatically when a
session's transcript is complete, or on request), retrying a failed one,
the clinician's edits and signature, and the job's own results.

Keyword-only, each in one transaction with an audit row (never the note's
text). A signed version never changes: editing it makes the next version,
which supersedes it when signed. Jobs are started after commit
(``notes.worker``); the job itself (``notes.jobs``) saves through
``note_draft_save`` and ``note_job_failed`` here.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clinics.access import Principal, access_note, access_session, notes_visible_to, system_principal
from clinics.audit import AuditAction, audit_record
from clinics.models import Clinic
from notes.engines.base import NoteDraft, NoteEngineError
from notes.models import (
    JOB_STATUSES,
    SECTION_KEYS,
    ClinicalNote,
    NoteEngineCall,
    NoteEngineName,
    NoteStatus,
)
from notes.selectors import (
    note_evidence_spans,
    note_latest,
    note_source_fingerprint,
    note_versions,
)
from sessions.models import ConsultationSession, SessionStatus
from voiceai.errors import Conflict, Forbidden, InvalidInput, NotFound
from voiceai.logging import get_logger

log = get_logger(__name__)

SENTENCE_TEXT_MAX = 2000
SENTENCES_PER_SECTION_MAX = 200
SENTENCE_ID_MAX = 16


class NoteConflict(Conflict):
    code = "note_conflict"
    default_message = "The note was changed since you read it. Read it again, then apply your change."


class NoteGenerating(Conflict):
    code = "note_generating"
    default_message = "The note is being generated; wait until its status is draft or failed."


class NoteNotEditable(Conflict):
    code = "note_not_editable"
    default_message = "This note version cannot be edited or signed."


class NoteNotSigned(Conflict):
    code = "note_not_signed"
    default_message = "The note has no signed version yet."


class BedrockNotEnabled(Forbidden):
    code = "bedrock_not_enabled"
    default_message = (
        "This clinic has not opted in to Amazon Bedrock for notes (notes_bedrock_enabled). A clinic admin can turn "
        "it on with PATCH /api/v1/clinic/; until then notes use the extractive engine."
    )


def _audit(principal: Principal, action: str, note: ClinicalNote, **details: Any) -> None:
    audit_record(
        clinic=principal.clinic,
        action=action,
        object_type="clinical_note",
        object_id=note.pk,
        actor=principal,
        details={"session_id": str(note.session_id), "version": note.version, **details},
    )


def _actor_label(principal: Principal) -> str:
    """Who asked, edited or signed, as the audit rows name them
    (``system:notes`` for the automatic drafts)."""
    system = principal.extra.get("system")
    return f"system:{system}" if system else principal.label


def _kick_after_commit() -> None:
    # Imported here: the worker runs the jobs, which save through this module.
    from notes.worker import note_jobs_kick

    transaction.on_commit(note_jobs_kick)


def note_engine_for(*, clinic: Clinic, requested: str | None = None) -> str:
    """Which engine drafts a clinic's note. Bedrock only for a clinic that
    opted in: asked for explicitly otherwise, a clear 403; as the platform's
    default, such a clinic gets the extractive engine instead."""
    if requested is not None:
        if requested not in NoteEngineName.values:
            raise InvalidInput(details={"engine": f"Must be one of {', '.join(NoteEngineName.values)}."})
        if requested == NoteEngineName.BEDROCK and not clinic.notes_bedrock_enabled:
            raise BedrockNotEnabled()
        return requested
    if settings.NOTES_ENGINE == NoteEngineName.BEDROCK and clinic.notes_bedrock_enabled:
        return NoteEngineName.BEDROCK
    return NoteEngineName.EXTRACTIVE


def _queue(note: ClinicalNote, *, engine: str, requested_by: str, delay: float = 0.0) -> None:
    """Put ``note`` (new, or an unsigned version made again) in the job queue."""
    note.status = NoteStatus.QUEUED
    note.engine = engine
    note.progress = 0
    note.attempts = 0
    note.sections = {}
    note.model_id = ""
    note.prompt_version = ""
    note.error_code = ""
    note.error_retryable = False
    note.lease_expires_at = None
    note.run_after = timezone.now() + timedelta(seconds=delay)
    note.requested_by = requested_by
    note.edited_by = ""
    note.edited_at = None


def _new_version(session: ConsultationSession, latest: ClinicalNote | None) -> ClinicalNote:
    return ClinicalNote(
        clinic_id=session.clinic_id,
        session=session,
        version=(latest.version + 1) if latest else 1,
        language=session.language,
        supersedes=latest if latest is not None and latest.status == NoteStatus.SIGNED else None,
    )


def _ensure_ended(session: ConsultationSession) -> None:
    if session.status != SessionStatus.ENDED:
        raise Conflict("A note is drafted from a finished transcript: end the session first.", code="session_not_ended")


def note_generate(*, principal: Principal, session: ConsultationSession, engine: str | None = None) -> ClinicalNote:
    """Asks for a (new) draft of the session's note (the POST generate
    endpoint). Idempotent while a job is queued or running (that job is
    returned). An unsigned latest version (draft or failed) is made again in
    place — its edits are dropped, its revision moves on so a stale editor
    gets 409; after a signed version, a new version is made, which will
    supersede it when signed. Audited (``note.generate``)."""
    chosen = note_engine_for(clinic=principal.clinic, requested=engine)
    with transaction.atomic():
        session = access_session(principal, session.pk, for_update=True)  # one version allocation at a time
        _ensure_ended(session)
        latest = note_latest(principal=principal, session=session)
        if latest is not None and latest.status in JOB_STATUSES:
            return latest
        if latest is not None and latest.status in (NoteStatus.DRAFT, NoteStatus.FAILED):
            note = latest
            note.revision += 1
        else:
            note = _new_version(session, latest)
        _queue(note, engine=chosen, requested_by=_actor_label(principal))
        note.save()
        _audit(principal, AuditAction.NOTE_GENERATE, note, engine=chosen, reason="request")
        _kick_after_commit()
    log.info("note_requested", session_id=str(session.pk), version=note.version, engine=chosen)
    return note


def note_retry(*, principal: Principal, session: ConsultationSession) -> ClinicalNote:
    """Runs a failed note's job again with the same engine (the POST retry
    endpoint); 409 ``note_not_failed`` for a note in any other state."""
    with transaction.atomic():
        note = access_note(principal, access_session(principal, session.pk), for_update=True)
        if note.status != NoteStatus.FAILED:
            raise Conflict(
                "Only a failed note can be retried.", code="note_not_failed", details={"status": note.status}
            )
        if note.engine == NoteEngineName.BEDROCK and not principal.clinic.notes_bedrock_enabled:
            raise BedrockNotEnabled()
        note.revision += 1
        _queue(note, engine=note.engine, requested_by=_actor_label(principal))
        note.save()
        _audit(principal, AuditAction.NOTE_GENERATE, note, engine=note.engine, reason="retry")
        _kick_after_commit()
    return note


def note_request_auto(*, clinic_id: Any, session_id: Any) -> ClinicalNote | None:
    """A session's transcript is complete (it ended, its producer sealed
    it, its batch job finished): its first draft is queued, a little later
    (NOTES_START_DELAY_SECONDS) so the last finals land first. Sent more
    than once per session, so idempotent: a queued job is pushed back to
    that delay, a running one left alone, and a draft nobody touched is
    made again only if the transcript changed since (late finals). None
    when nothing was queued."""
    clinic = Clinic.objects.get(pk=clinic_id)
    principal = system_principal(clinic, label="notes")
    delay = settings.NOTES_START_DELAY_SECONDS
    with transaction.atomic():
        try:
            session = access_session(principal, session_id, for_update=True)
        except NotFound:
            return None  # erased meanwhile
        if session.status != SessionStatus.ENDED:
            return None
        latest = note_latest(principal=principal, session=session)
        if latest is None:
            note = _new_version(session, None)
        elif latest.status == NoteStatus.QUEUED:
            latest.run_after = max(latest.run_after or timezone.now(), timezone.now() + timedelta(seconds=delay))
            latest.save(update_fields=["run_after", "updated_at"])
            return latest
        elif (
            latest.status == NoteStatus.DRAFT
            and latest.version == 1
            and latest.requested_by == _actor_label(principal)
            and not latest.edited_at
            and latest.source_fingerprint != note_source_fingerprint(principal=principal, session=session)
        ):
            note = latest
            note.revision += 1
        else:
            return None
        engine = note_engine_for(clinic=clinic)
        _queue(note, engine=engine, requested_by=_actor_label(principal), delay=delay)
        note.save()
        _audit(principal, AuditAction.NOTE_GENERATE, note, engine=engine, reason="transcript_completed")
        _kick_after_commit()
    return note


# --- the job's results -------------------------------------------------------------


def _call_record(note: ClinicalNote, *, engine: str, model_id: str, input_chars: int, output_chars: int, outcome: str):
    NoteEngineCall.objects.create(
        clinic_id=note.clinic_id,
        note=note,
        engine=engine,
        model_id=model_id[:200],
        input_chars=input_chars,
        output_chars=output_chars,
        outcome=outcome[:64],
    )


def note_draft_save(*, note: ClinicalNote, draft: NoteDraft, fingerprint: str) -> bool:
    """The job's draft stored, if the job still holds the note (its claim,
    ``note.attempts``, is the current one: a job whose lease expired and
    was taken up elsewhere stores nothing). Sentences get their ids here.
    Audited as a system write (``note.write``). False: not stored."""
    sections: dict[str, list[dict[str, Any]]] = {}
    n = 0
    for key in SECTION_KEYS:
        sections[key] = []
        for sentence in draft.sections.get(key, []):
            n += 1
            sections[key].append({"id": f"n{n}", "text": sentence.text, "evidence": list(sentence.evidence)})
    with transaction.atomic():
        stored = ClinicalNote.objects.filter(pk=note.pk, status=NoteStatus.GENERATING, attempts=note.attempts).update(
            status=NoteStatus.DRAFT,
            progress=100,
            sections=sections,
            model_id=draft.model_id[:200],
            prompt_version=draft.prompt_version[:32],
            source_fingerprint=fingerprint,
            error_code="",
            error_retryable=False,
            lease_expires_at=None,
            run_after=None,
            updated_at=timezone.now(),
        )
        _call_record(
            note,
            engine=note.engine,
            model_id=draft.model_id,
            input_chars=draft.input_chars,
            output_chars=draft.output_chars,
            outcome="ok",
        )
        if stored:
            principal = system_principal(note.clinic, label="notes")
            _audit(principal, AuditAction.NOTE_WRITE, note, engine=note.engine, sentences=n, outcome="draft")
    log.info("note_drafted", note_id=str(note.pk), engine=note.engine, sentences=n, stored=bool(stored))
    return bool(stored)


def note_job_failed(*, note: ClinicalNote, error: NoteEngineError, input_chars: int = 0) -> str:
    """A failed attempt: queued again later (retryable, attempts left: the
    delay doubles each time) or ``failed`` with its code for everyone to
    see and retry. Never a silent gap. Returns the status set ('' when the
    job no longer held the note)."""
    retry = error.retryable and note.attempts < settings.NOTES_MAX_ATTEMPTS
    now = timezone.now()
    fields: dict[str, Any] = {
        "error_code": error.code[:64],
        "error_retryable": error.retryable,
        "lease_expires_at": None,
        "updated_at": now,
    }
    if retry:
        delay = settings.NOTES_RETRY_BASE_SECONDS * 2 ** max(0, note.attempts - 1)
        fields.update(status=NoteStatus.QUEUED, run_after=now + timedelta(seconds=delay), progress=0)
    else:
        fields.update(status=NoteStatus.FAILED, run_after=None)
    with transaction.atomic():
        updated = ClinicalNote.objects.filter(pk=note.pk, status=NoteStatus.GENERATING, attempts=note.attempts).update(
            **fields
        )
        _call_record(note, engine=note.engine, model_id="", input_chars=input_chars, output_chars=0, outcome=error.code)
        if updated:
            principal = system_principal(note.clinic, label="notes")
            _audit(
                principal,
                AuditAction.NOTE_WRITE,
                note,
                engine=note.engine,
                outcome=fields["status"],
                error_code=error.code,
                attempts=note.attempts,
            )
    log.warning(
        "note_attempt_failed", note_id=str(note.pk), code=error.code, attempts=note.attempts, status=fields["status"]
    )
    return fields["status"] if updated else ""


# --- the clinician's edits and signature -------------------------------------------


def _check_precondition(note: ClinicalNote, latest: ClinicalNote, *, version: object, revision: object) -> None:
    errors: dict[str, str] = {}
    for name, value in (("version", version), ("revision", revision)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            errors[name] = f"Must be the note's {name} you read (a non-negative integer)."
    if errors:
        raise InvalidInput("Send the version and revision you read.", code="precondition_required", details=errors)
    if latest.version != version or latest.revision != revision:
        raise NoteConflict(details={"version": latest.version, "revision": latest.revision})
    if latest.status in JOB_STATUSES:
        raise NoteGenerating(details={"status": latest.status})
    if latest.status not in (NoteStatus.DRAFT, NoteStatus.SIGNED):
        raise NoteNotEditable(details={"status": latest.status})


def _edited_sections(current: dict[str, Any], sections: object) -> dict[str, list[dict[str, Any]]]:
    """The new sentences from a client's ``sections``: a sentence with an
    existing ``id`` keeps that sentence's evidence (only the server links
    evidence) and is marked edited when its text changed; one without an id
    is the clinician's own, with no evidence."""
    if not isinstance(sections, dict) or set(sections) - set(SECTION_KEYS):
        raise InvalidInput(details={"sections": f"Must be an object with keys among {', '.join(SECTION_KEYS)}."})
    known = {s["id"]: s for items in current.values() for s in items}
    next_id = 1 + max((int(i[1:]) for i in known if i[1:].isdigit()), default=0)
    seen: set[str] = set()
    errors: dict[str, str] = {}
    result: dict[str, list[dict[str, Any]]] = {}
    for key in SECTION_KEYS:
        items = sections.get(key, [])
        if not isinstance(items, list) or len(items) > SENTENCES_PER_SECTION_MAX:
            errors[f"sections.{key}"] = f"Must be a list of at most {SENTENCES_PER_SECTION_MAX} sentences."
            continue
        result[key] = []
        for i, item in enumerate(items):
            where = f"sections.{key}[{i}]"
            if isinstance(item, dict) and set(item) - {"id", "text"}:
                errors[where] = "A sentence has only id and text: evidence is linked by the server, never sent."
                continue
            text = item.get("text") if isinstance(item, dict) else None
            if not isinstance(text, str) or not text.strip() or len(text) > SENTENCE_TEXT_MAX:
                errors[where] = f"Needs a text of 1-{SENTENCE_TEXT_MAX} characters."
                continue
            text = " ".join(text.split())
            sentence_id = item.get("id")
            if sentence_id is None:
                result[key].append({"id": f"n{next_id}", "text": text, "evidence": [], "edited": True})
                next_id += 1
                continue
            if not isinstance(sentence_id, str) or sentence_id not in known or sentence_id in seen:
                errors[where] = "Unknown or repeated sentence id (leave id out for a new sentence)."
                continue
            seen.add(sentence_id)
            old = known[sentence_id]
            result[key].append(
                {
                    "id": sentence_id,
                    "text": text,
                    "evidence": list(old.get("evidence", [])),
                    "edited": bool(old.get("edited")) or text != old["text"],
                }
            )
    if errors:
        raise InvalidInput("The note has invalid sentences.", details=errors)
    return result


def note_edit(
    *, principal: Principal, session: ConsultationSession, version: object, revision: object, sections: object
) -> ClinicalNote:
    """The clinician's edit of the latest version's sentences (the whole
    set: reorder, move between sections, rewrite, drop, add). ``version``
    and ``revision`` are what the caller read: if the note moved on, 409
    ``note_conflict`` with the current ones. A draft is changed in place
    (revision + 1); a signed version is never changed: the edit becomes a
    new draft version that will supersede it once signed. Audited
    (``note.edit``: counts, never the text)."""
    with transaction.atomic():
        session = access_session(principal, session.pk, for_update=True)
        latest = access_note(principal, session, for_update=True)
        _check_precondition(latest, latest, version=version, revision=revision)
        new_sections = _edited_sections(latest.sections or {}, sections)
        now = timezone.now()
        if latest.status == NoteStatus.SIGNED:
            note = _new_version(session, latest)
            note.status = NoteStatus.DRAFT
            note.progress = 100
            note.engine = latest.engine
            note.model_id = latest.model_id
            note.prompt_version = latest.prompt_version
            note.source_fingerprint = latest.source_fingerprint
            note.requested_by = _actor_label(principal)
        else:
            note = latest
            note.revision += 1
        note.sections = new_sections
        note.edited_by = _actor_label(principal)
        note.edited_at = now
        note.save()
        _audit(
            principal,
            AuditAction.NOTE_EDIT,
            note,
            revision=note.revision,
            sentences=sum(len(v) for v in new_sections.values()),
            **({"supersedes_version": latest.version} if note is not latest else {}),
        )
    return note


def note_sign(*, principal: Principal, session: ConsultationSession, version: object, revision: object) -> ClinicalNote:
    """The clinician signs the latest version as read (``version`` and
    ``revision``, 409 ``note_conflict`` otherwise): it becomes immutable and
    the one integrators fetch; the signed version it was made from becomes
    ``superseded``. Signing the signed latest version again is a no-op.
    Audited (``note.sign``)."""
    with transaction.atomic():
        session = access_session(principal, session.pk, for_update=True)
        latest = access_note(principal, session, for_update=True)
        if latest.status == NoteStatus.SIGNED and latest.version == version and latest.revision == revision:
            return latest
        _check_precondition(latest, latest, version=version, revision=revision)
        if latest.status != NoteStatus.DRAFT:
            raise NoteNotEditable(details={"status": latest.status})
        latest.status = NoteStatus.SIGNED
        latest.signed_by = _actor_label(principal)
        latest.signed_at = timezone.now()
        latest.save(update_fields=["status", "signed_by", "signed_at", "updated_at"])
        details: dict[str, Any] = {"revision": latest.revision}
        if latest.supersedes_id:
            previous = notes_visible_to(principal, session).filter(pk=latest.supersedes_id, status=NoteStatus.SIGNED)
            if previous.update(status=NoteStatus.SUPERSEDED, updated_at=timezone.now()):
                details["supersedes_version"] = ClinicalNote.objects.get(pk=latest.supersedes_id).version
        _audit(principal, AuditAction.NOTE_SIGN, latest, **details)
    log.info("note_signed", note_id=str(latest.pk), version=latest.version)
    return latest


# --- reads for people and integrators (audited) --------------------------------------


@dataclass(frozen=True)
class NoteView:
    note: ClinicalNote
    spans: dict[str, tuple[int, int]]
    versions: list[ClinicalNote]


def note_read(
    *,
    principal: Principal,
    session: ConsultationSession,
    version: int | None = None,
    signed: bool = False,
    fmt: str = "json",
) -> NoteView:
    """One version of the note (the latest, the latest signed with
    ``signed``, or ``version``) with its evidence spans and the list of
    versions; audited as ``note.read`` with the format (never the text).
    404 ``note_not_found`` when there is none, 409 ``note_not_signed`` when
    ``signed`` and no version is signed yet."""
    if signed:
        candidates = notes_visible_to(principal, session).filter(status=NoteStatus.SIGNED).order_by("-version")
        note = candidates.first()
        if note is None:
            access_note(principal, session)  # no note at all: 404 rather than 409
            raise NoteNotSigned()
    else:
        note = access_note(principal, session, version)
    spans = note_evidence_spans(principal=principal, session=session, note=note)
    versions = note_versions(principal=principal, session=session)
    _audit(principal, AuditAction.NOTE_READ, note, format=fmt)
    return NoteView(note=note, spans=spans, versions=versions)
