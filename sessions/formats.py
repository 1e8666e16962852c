"""Transcript renderings: JSON, plain text, WebVTT and SubRip.

Inputs are final segments in time order; each renderer is a pure function
so it is cheap to test and reuse (export, downloads).
"""

import json
from collections.abc import Iterable
from typing import Any, Protocol

FORMATS = ("json", "txt", "vtt", "srt")
CONTENT_TYPES = {
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
}


# Role names in text exports, in the consultation's language (JSON carries
# the role codes). Kept here, not in gettext: a download's language is the
# session's, not the language of whoever downloads it.
ROLE_LABELS = {
    "ja-JP": {"clinician": "医師", "patient": "患者", "family": "家族", "other": "その他"},
    "en-US": {"clinician": "Clinician", "patient": "Patient", "family": "Family", "other": "Other"},
}
FIRST_GUESS_ROLE = "clinician"


class SegmentLike(Protocol):
    segment_id: str
    revision: int
    start_ms: int
    end_ms: int
    text: str
    speaker: str
    confidence: float | None


def speaker_roles(labels: Iterable[str], stored: dict[str, str] | None) -> dict[str, str]:
    """The roles of a session's speaker ``labels`` (in the order heard): the
    mapping a person set (``stored``), or while there is none the first
    guess — the first label heard is the clinician (who opens the
    consultation), the others unknown. No labels, no roles: transcripts
    without labels read as before."""
    if stored:
        return dict(stored)
    for label in labels:
        if label:
            return {label: FIRST_GUESS_ROLE}
    return {}


def needs_review(segment: SegmentLike, threshold: float) -> bool:
    """A final to check first: the engine was unsure of it and no clinician
    has confirmed or corrected it. No confidence (an engine that gives none)
    is never flagged. ``sessions.selectors.REVIEW_FILTER`` is the same rule
    as a query."""
    confidence = segment.confidence
    return confidence is not None and confidence < threshold and getattr(segment, "reviewed_at", None) is None


def _speaker_text(s: SegmentLike, roles: dict[str, str] | None, language: str) -> str:
    """``Clinician (spk_0)``: the role where known, the label kept."""
    role = (roles or {}).get(s.speaker)
    if not role:
        return s.speaker
    label = ROLE_LABELS.get(language, ROLE_LABELS["en-US"]).get(role, role)
    return f"{label} ({s.speaker})"


def _one_line(text: str) -> str:
    # A blank line would end a VTT/SRT cue early; a transcript segment is
    # one utterance, so newlines carry no meaning.
    return " ".join(text.split())


def _timestamp(ms: int, separator: str) -> str:
    ms = max(0, int(ms))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


class RevisionLike(Protocol):
    revision: int
    text_before: str
    text_after: str
    edited_by: str
    edited_at: Any


def transcript_document(
    segments: Iterable[SegmentLike],
    *,
    session_id: object,
    language: str,
    history: dict[Any, list[RevisionLike]] | None = None,
    roles: dict[str, str] | None = None,
    review_threshold: float | None = None,
    **header: Any,
) -> dict[str, Any]:
    """The transcript as one JSON document: the download (``json``), the
    export and the ``transcript.json`` stored beside the audio (which adds
    ``header`` fields: sample rate, audio length, sha256) all use this.
    Texts are the latest revision; with ``history`` (corrections by segment
    row id) each segment also carries its engine text and its corrections.
    ``roles`` (``speaker_roles``) adds ``speaker_role`` to labelled
    segments and the mapping itself when there are labels;
    ``review_threshold`` (the clinic's) adds each final's review flag and
    the number flagged — left out of ``transcript.json``, whose threshold
    would go stale when the clinic changes it."""
    segments = list(segments)
    document: dict[str, Any] = {"session_id": str(session_id), "language": language, **header}
    if roles:
        document["speaker_roles"] = roles
    entries = [_segment_entry(s, history, roles, review_threshold) for s in segments]
    if review_threshold is not None:
        document["needs_review_count"] = sum(1 for e in entries if e["needs_review"])
    document["segments"] = entries
    return document


def _segment_entry(
    s: SegmentLike,
    history: dict[Any, list[RevisionLike]] | None,
    roles: dict[str, str] | None = None,
    review_threshold: float | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "segment_id": s.segment_id,
        "revision": s.revision,
        "start_ms": s.start_ms,
        "end_ms": s.end_ms,
        "text": s.text,
        "speaker": s.speaker,
        "confidence": s.confidence,
    }
    if roles and s.speaker:
        entry["speaker_role"] = roles.get(s.speaker)
    if review_threshold is not None:
        reviewed_at = getattr(s, "reviewed_at", None)
        entry["needs_review"] = needs_review(s, review_threshold)
        entry["reviewed_by"] = getattr(s, "reviewed_by", "")
        entry["reviewed_at"] = reviewed_at.isoformat() if hasattr(reviewed_at, "isoformat") else reviewed_at
    if history is not None:
        revisions = history.get(getattr(s, "pk", None), [])
        entry["original_text"] = revisions[0].text_before if revisions else s.text
        entry["revisions"] = [revision_entry(r) for r in revisions]
    return entry


def revision_entry(r: RevisionLike) -> dict[str, Any]:
    edited_at = r.edited_at.isoformat() if hasattr(r.edited_at, "isoformat") else r.edited_at
    return {
        "revision": r.revision,
        "text_before": r.text_before,
        "text_after": r.text_after,
        "edited_by": r.edited_by,
        "edited_at": edited_at,
    }


def transcript_as_json(
    segments: Iterable[SegmentLike], *, session_id: object, language: str, roles: dict[str, str] | None = None
) -> str:
    return json.dumps(
        transcript_document(segments, session_id=session_id, language=language, roles=roles), ensure_ascii=False
    )


def transcript_as_txt(
    segments: Iterable[SegmentLike], *, roles: dict[str, str] | None = None, language: str = "en-US"
) -> str:
    lines = []
    for s in segments:
        text = _one_line(s.text)
        lines.append(f"{_speaker_text(s, roles, language)}: {text}" if s.speaker else text)
    return "\n".join(lines) + ("\n" if lines else "")


def _vtt_escape(text: str) -> str:
    # WebVTT cue text: & and < start entities/tags, and "-->" is forbidden.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def transcript_as_vtt(
    segments: Iterable[SegmentLike], *, roles: dict[str, str] | None = None, language: str = "en-US"
) -> str:
    cues = ["WEBVTT", ""]
    for s in segments:
        text = _vtt_escape(_one_line(s.text))
        if s.speaker:
            text = f"<v {_vtt_escape(_one_line(_speaker_text(s, roles, language)))}>{text}"
        cues += [f"{_timestamp(s.start_ms, '.')} --> {_timestamp(s.end_ms, '.')}", text, ""]
    return "\n".join(cues)


def transcript_as_srt(
    segments: Iterable[SegmentLike], *, roles: dict[str, str] | None = None, language: str = "en-US"
) -> str:
    blocks = []
    for index, s in enumerate(segments, start=1):
        text = _one_line(s.text)
        if s.speaker:
            text = f"{_speaker_text(s, roles, language)}: {text}"
        blocks.append(f"{index}\n{_timestamp(s.start_ms, ',')} --> {_timestamp(s.end_ms, ',')}\n{text}\n")
    return "\n".join(blocks)


def transcript_render(
    segments: list[SegmentLike],
    *,
    fmt: str,
    session_id: object,
    language: str,
    roles: dict[str, str] | None = None,
) -> str:
    if fmt == "json":
        return transcript_as_json(segments, session_id=session_id, language=language, roles=roles)
    if fmt == "txt":
        return transcript_as_txt(segments, roles=roles, language=language)
    if fmt == "vtt":
        return transcript_as_vtt(segments, roles=roles, language=language)
    if fmt == "srt":
        return transcript_as_srt(segments, roles=roles, language=language)
    raise ValueError(f"unknown transcript format {fmt!r}")
