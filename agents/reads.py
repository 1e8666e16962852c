"""What the MCP tools and resources read, for one principal: plain
synchronous functions over the access layer, the selectors and the
services (the same audit rows as REST), returning JSON-ready dicts.

Every result is bounded: pages of at most ``MAX_PAGE`` consultations or
search hits and ``MAX_SEGMENTS_PAGE`` transcript segments, so an assistant
can't pull a clinic's history in one call.
"""

from datetime import datetime
from typing import Any

from clinics.access import Principal, access_session
from notes.formats import note_document
from notes.models import NoteStatus
from notes.services import note_read
from sessions import formats
from sessions.models import ConsultationSession, SessionStatus
from sessions.search import search_hit, search_query_parse, transcript_search
from sessions.selectors import session_list, transcript_history
from sessions.services import transcript_read, transcript_search_audit
from voiceai.errors import NotFound

MAX_PAGE = 50
MAX_OFFSET = 10_000
MAX_SEGMENTS_PAGE = 500
#: A resource has no paging: its transcript is cut here (get_transcript pages).
RESOURCE_MAX_SEGMENTS = 2000
NO_NOTE = (
    "No note for this consultation yet: a draft is written after the consultation ends. Until then only the "
    "transcript exists (get_transcript)."
)
UNSIGNED_NOTE = (
    "This note is a draft (status {status}) that no clinician has signed: it may be incomplete or wrong. "
    "Only a signed note is part of the clinical record."
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def consultation_summary(session: ConsultationSession) -> dict[str, Any]:
    """What identifies a consultation, without any transcript text."""
    return {
        "session_id": str(session.pk),
        "status": session.status,
        "language": session.language,
        "external_ref": session.external_ref,
        "created_at": _iso(session.created_at),
        "started_at": _iso(session.started_at),
        "ended_at": _iso(session.ended_at),
        "audio_duration_ms": session.audio_duration_ms,
    }


def _page(rows: list[Any], *, offset: int, limit: int) -> tuple[list[Any], int | None]:
    """The page and the next offset (rows holds up to limit + 1)."""
    more = len(rows) > limit
    return rows[:limit], (offset + limit if more and offset + limit <= MAX_OFFSET else None)


def consultations_search(
    *,
    principal: Principal,
    client: str,
    text: str | None = None,
    status: str | None = None,
    language: str | None = None,
    external_ref: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    offset: int = 0,
    limit: int = 10,
) -> dict[str, Any]:
    """With ``text``: the matching final segments (best first), each with its
    consultation and times, and a ``transcript.read`` audit row per
    consultation shown. Without: the consultations, newest first (no
    transcript text, so no audit row, as in REST's session list)."""
    limit = max(1, min(limit, MAX_PAGE))
    filters = {
        "status": status,
        "created_after": created_after,
        "created_before": created_before,
        "external_ref": external_ref,
    }
    page_info = {"offset": offset, "limit": limit}
    if text is None or not text.strip():
        qs = session_list(principal=principal, **filters)
        if language:
            qs = qs.filter(language=language)
        sessions, next_offset = _page(list(qs[offset : offset + limit + 1]), offset=offset, limit=limit)
        return {
            "kind": "consultations",
            "consultations": [consultation_summary(s) for s in sessions],
            **page_info,
            "next_offset": next_offset,
        }
    query = search_query_parse(text)
    qs = transcript_search(principal=principal, query=query, language=language, **filters)
    segments, next_offset = _page(list(qs[offset : offset + limit + 1]), offset=offset, limit=limit)
    transcript_search_audit(principal=principal, segments=segments, via="mcp", client=client)
    hits = []
    for segment in segments:
        hit = search_hit(segment, query)
        hits.append(
            {
                "session_id": hit.session_id,
                "segment_id": hit.segment_id,
                "start_ms": hit.start_ms,
                "end_ms": hit.end_ms,
                "speaker": hit.speaker,
                "snippet": hit.snippet,
                "rank": hit.rank,
                "language": hit.language,
                "external_ref": hit.external_ref,
                "session_created_at": _iso(hit.session_created_at),
            }
        )
    return {"kind": "hits", "query": query.text, "hits": hits, **page_info, "next_offset": next_offset}


def transcript_get(
    *,
    principal: Principal,
    client: str,
    session_id: str,
    include_revisions: bool = False,
    offset: int = 0,
    limit: int = 200,
    max_limit: int = MAX_SEGMENTS_PAGE,
) -> dict[str, Any]:
    """A page of the consultation's final segments (latest revisions, time
    order), optionally with each segment's engine text and corrections;
    audited like REST's transcript download."""
    limit = max(1, min(limit, max_limit))
    session = access_session(principal, session_id)
    segments = transcript_read(principal=principal, session=session, fmt="json", via="mcp", client=client)
    history = transcript_history(principal=principal, session=session) if include_revisions else None
    page = segments[offset : offset + limit]
    document = formats.transcript_document(page, session_id=session.pk, language=session.language, history=history)
    more = offset + limit < len(segments)
    return {
        "consultation": consultation_summary(session),
        "segments": document["segments"],
        "total_segments": len(segments),
        "offset": offset,
        "limit": limit,
        "next_offset": offset + limit if more else None,
    }


def note_get(*, principal: Principal, session_id: str) -> dict[str, Any]:
    """The consultation's note: its latest version (the REST document:
    sections, sentences and their evidence), audited as ``note.read`` with
    format ``mcp``; a draft says it is unsigned. No note yet is a clear
    answer, never an invented one. Another clinic's id is NotFound."""
    session = access_session(principal, session_id)
    try:
        view = note_read(principal=principal, session=session, fmt="mcp")
    except NotFound:
        return {"session_id": str(session.pk), "note": None, "message": NO_NOTE}
    document = note_document(view.note, spans=view.spans, versions=view.versions)
    out: dict[str, Any] = {"session_id": str(session.pk), "note": document}
    if view.note.status != NoteStatus.SIGNED:
        out["message"] = UNSIGNED_NOTE.format(status=view.note.status)
    return out


def live_list(*, principal: Principal, offset: int = 0, limit: int = 20) -> dict[str, Any]:
    """The consultations being recorded now, newest first."""
    limit = max(1, min(limit, MAX_PAGE))
    qs = session_list(principal=principal, status=SessionStatus.LIVE)
    sessions, next_offset = _page(list(qs[offset : offset + limit + 1]), offset=offset, limit=limit)
    return {
        "consultations": [consultation_summary(s) for s in sessions],
        "offset": offset,
        "limit": limit,
        "next_offset": next_offset,
    }
