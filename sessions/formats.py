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


class SegmentLike(Protocol):
    segment_id: str
    revision: int
    start_ms: int
    end_ms: int
    text: str
    speaker: str
    confidence: float | None


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
    **header: Any,
) -> dict[str, Any]:
    """The transcript as one JSON document: the download (``json``), the
    export and the ``transcript.json`` stored beside the audio (which adds
    ``header`` fields: sample rate, audio length, sha256) all use this.
    Texts are the latest revision; with ``history`` (corrections by segment
    row id) each segment also carries its engine text and its corrections."""
    return {
        "session_id": str(session_id),
        "language": language,
        **header,
        "segments": [_segment_entry(s, history) for s in segments],
    }


def _segment_entry(s: SegmentLike, history: dict[Any, list[RevisionLike]] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "segment_id": s.segment_id,
        "revision": s.revision,
        "start_ms": s.start_ms,
        "end_ms": s.end_ms,
        "text": s.text,
        "speaker": s.speaker,
        "confidence": s.confidence,
    }
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


def transcript_as_json(segments: Iterable[SegmentLike], *, session_id: object, language: str) -> str:
    return json.dumps(transcript_document(segments, session_id=session_id, language=language), ensure_ascii=False)


def transcript_as_txt(segments: Iterable[SegmentLike]) -> str:
    lines = []
    for s in segments:
        text = _one_line(s.text)
        lines.append(f"{s.speaker}: {text}" if s.speaker else text)
    return "\n".join(lines) + ("\n" if lines else "")


def _vtt_escape(text: str) -> str:
    # WebVTT cue text: & and < start entities/tags, and "-->" is forbidden.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def transcript_as_vtt(segments: Iterable[SegmentLike]) -> str:
    cues = ["WEBVTT", ""]
    for s in segments:
        text = _vtt_escape(_one_line(s.text))
        if s.speaker:
            text = f"<v {_vtt_escape(_one_line(s.speaker))}>{text}"
        cues += [f"{_timestamp(s.start_ms, '.')} --> {_timestamp(s.end_ms, '.')}", text, ""]
    return "\n".join(cues)


def transcript_as_srt(segments: Iterable[SegmentLike]) -> str:
    blocks = []
    for index, s in enumerate(segments, start=1):
        text = _one_line(s.text)
        if s.speaker:
            text = f"{s.speaker}: {text}"
        blocks.append(f"{index}\n{_timestamp(s.start_ms, ',')} --> {_timestamp(s.end_ms, ',')}\n{text}\n")
    return "\n".join(blocks)


def transcript_render(segments: list[SegmentLike], *, fmt: str, session_id: object, language: str) -> str:
    if fmt == "json":
        return transcript_as_json(segments, session_id=session_id, language=language)
    if fmt == "txt":
        return transcript_as_txt(segments)
    if fmt == "vtt":
        return transcript_as_vtt(segments)
    if fmt == "srt":
        return transcript_as_srt(segments)
    raise ValueError(f"unknown transcript format {fmt!r}")
