"""Reads of clinical notes, always through the access layer with the
acting principal. Reading a note's text for a person is audited by
``notes.services.note_read``; these return rows and ids only."""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, Sum

from clinics.access import Principal, notes_visible_to, segments_visible_to
from notes.engines.base import NoteSegment
from notes.models import ClinicalNote, NoteEngineCall, NoteStatus
from sessions.models import ConsultationSession
from sessions.selectors import session_speaker_roles, transcript_finals


def note_latest(*, principal: Principal, session: ConsultationSession) -> ClinicalNote | None:
    """The session's newest note version (any status), or None."""
    return notes_visible_to(principal, session).order_by("-version").first()


def note_latest_signed(*, principal: Principal, session: ConsultationSession) -> ClinicalNote | None:
    """The version integrators fetch: the newest signed one."""
    return notes_visible_to(principal, session).filter(status=NoteStatus.SIGNED).order_by("-version").first()


def note_versions(*, principal: Principal, session: ConsultationSession) -> list[ClinicalNote]:
    """Every version of the session's note, newest first (without sections)."""
    return list(notes_visible_to(principal, session).defer("sections").order_by("-version"))


def note_evidence_spans(
    *, principal: Principal, session: ConsultationSession, note: ClinicalNote
) -> dict[str, tuple[int, int]]:
    """Where each segment the note cites is in the audio: segment id ->
    (start_ms, end_ms). One query on the cited ids; a segment gone since
    (never: segments leave only with their session) is simply absent."""
    cited = {sid for sentences in (note.sections or {}).values() for s in sentences for sid in s.get("evidence", [])}
    if not cited:
        return {}
    rows = segments_visible_to(principal, session).filter(is_final=True, segment_id__in=cited)
    return {sid: (start, end) for sid, start, end in rows.values_list("segment_id", "start_ms", "end_ms")}


def transcript_fingerprint(pairs: list[tuple[str, int]]) -> str:
    """A digest of which finals at which revisions a draft was made from."""
    digest = hashlib.sha256()
    for segment_id, revision in pairs:
        digest.update(f"{segment_id}\x00{revision}\n".encode())
    return digest.hexdigest()


def note_source_fingerprint(*, principal: Principal, session: ConsultationSession) -> str:
    """The fingerprint of the session's transcript now (ids and revisions only, no text)."""
    pairs = list(transcript_finals(principal=principal, session=session).values_list("segment_id", "revision"))
    return transcript_fingerprint(pairs)


@dataclass(frozen=True)
class NoteSource:
    segments: tuple[NoteSegment, ...]
    fingerprint: str


def note_source(*, principal: Principal, session: ConsultationSession) -> NoteSource:
    """What a note engine is given: the finals at their latest revision in
    time order, each with its speaker's role (as set, or the first guess)."""
    finals = list(transcript_finals(principal=principal, session=session))
    roles = session_speaker_roles(principal=principal, session=session) if any(s.speaker for s in finals) else {}
    segments = tuple(
        NoteSegment(
            segment_id=s.segment_id,
            start_ms=s.start_ms,
            end_ms=s.end_ms,
            text=s.text,
            role=roles.get(s.speaker) if s.speaker else None,
        )
        for s in finals
    )
    return NoteSource(
        segments=segments, fingerprint=transcript_fingerprint([(s.segment_id, s.revision) for s in finals])
    )


@dataclass(frozen=True)
class EngineUsage:
    clinic_id: Any
    clinic_name: str
    engine: str
    calls: int
    failed_calls: int
    input_chars: int
    output_chars: int


def note_engine_usage(*, since: datetime | None = None) -> list[EngineUsage]:
    """Note-engine calls per clinic and engine (platform staff's view of
    what each clinic sends to which engine). Spans every clinic by design:
    only the staff-only admin calls it. Counts and characters, never text."""
    calls = NoteEngineCall.objects.all()
    if since is not None:
        calls = calls.filter(created_at__gte=since)
    rows = (
        calls.values("clinic_id", "clinic__name", "engine")
        .annotate(
            calls=Count("id"),
            failed_calls=Count("id", filter=~Q(outcome="ok")),
            input_chars=Sum("input_chars"),
            output_chars=Sum("output_chars"),
        )
        .order_by("clinic__name", "engine")
    )
    return [
        EngineUsage(
            clinic_id=row["clinic_id"],
            clinic_name=row["clinic__name"],
            engine=row["engine"],
            calls=row["calls"],
            failed_calls=row["failed_calls"],
            input_chars=row["input_chars"] or 0,
            output_chars=row["output_chars"] or 0,
        )
        for row in rows
    ]
