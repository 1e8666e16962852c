"""A note as JSON (the API, the console) and as plain text laid out for
pasting into an EHR. Pure functions of the note row and its evidence spans.

Labels follow the consultation's language, not the reader's: a Japanese
consultation's note is written for a Japanese chart."""

from typing import Any

from notes.models import SECTION_KEYS, ClinicalNote, NoteEngineName, NoteStatus

SECTION_LABELS = {
    "ja-JP": {"subjective": "主訴・現病歴", "objective": "所見", "assessment": "評価", "plan": "計画"},
    "en-US": {"subjective": "Subjective", "objective": "Objective", "assessment": "Assessment", "plan": "Plan"},
}

# What the page says about where a draft's words come from.
ENGINE_NOTICES = {
    NoteEngineName.EXTRACTIVE: {
        "ja-JP": "この下書きは文字起こしの文をルールで4つの欄に振り分けたものです。文章は生成していません。"
        "内容を確認・修正してから署名してください。",
        "en-US": "This draft sorts the transcript's own sentences into the four sections by rules; no text was "
        "written by a model. Check and edit it before signing.",
    },
    NoteEngineName.BEDROCK: {
        "ja-JP": "この下書きはAIモデル（Amazon Bedrock）が文字起こしから作成しました。各文の根拠を確認・修正してから"
        "署名してください。",
        "en-US": "This draft was written by an AI model (Amazon Bedrock) from the transcript. Check each sentence "
        "against its evidence and edit it before signing.",
    },
}

EMPTY_SECTION = {"ja-JP": "（記載なし）", "en-US": "(none)"}
DRAFT_BANNER = {"ja-JP": "※下書き（未署名）", "en-US": "DRAFT (not signed)"}

ERROR_MESSAGES = {
    "note_engine_throttled": "The note engine is busy (throttled); the job retries by itself.",
    "note_engine_timeout": "The note engine did not answer in time.",
    "note_engine_unavailable": "The note engine could not be reached.",
    "note_output_invalid": "The model's answer was not a valid note (malformed, or citing segments that do not "
    "exist); nothing was stored. Retry or use the extractive engine.",
    "note_engine_denied": "The note engine refused the request (access or model configuration).",
    "note_engine_error": "The note engine failed.",
    "note_job_interrupted": "The process generating the note stopped; the job was taken up again.",
    "note_job_lost": "The process generating the note stopped too often; retry.",
    "internal_error": "The note job failed unexpectedly; retry.",
}


def labels_for(language: str) -> dict[str, str]:
    return SECTION_LABELS.get(language, SECTION_LABELS["en-US"])


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def sentence_entry(sentence: dict[str, Any], spans: dict[str, tuple[int, int]]) -> dict[str, Any]:
    evidence = [
        {"segment_id": sid, "start_ms": spans[sid][0], "end_ms": spans[sid][1]}
        for sid in sentence.get("evidence", [])
        if sid in spans
    ]
    return {
        "id": sentence["id"],
        "text": sentence["text"],
        "edited": bool(sentence.get("edited")),
        "evidence": evidence,
        # The span to play: from the first cited segment's start to the last's end.
        "start_ms": min((e["start_ms"] for e in evidence), default=None),
        "end_ms": max((e["end_ms"] for e in evidence), default=None),
    }


def note_document(
    note: ClinicalNote,
    *,
    spans: dict[str, tuple[int, int]],
    versions: list[ClinicalNote] | None = None,
) -> dict[str, Any]:
    """The JSON of one note version (``GET /api/v1/sessions/{id}/note/``)."""
    labels = labels_for(note.language)
    sections = note.sections or {}
    signed = [v.version for v in versions or [] if v.status == NoteStatus.SIGNED]
    error = None
    if note.error_code:
        error = {
            "code": note.error_code,
            "retryable": note.error_retryable,
            "message": ERROR_MESSAGES.get(note.error_code, ERROR_MESSAGES["note_engine_error"]),
        }
    return {
        "id": str(note.pk),
        "session_id": str(note.session_id),
        "version": note.version,
        "revision": note.revision,
        "status": note.status,
        "progress": note.progress,
        "language": note.language,
        "engine": note.engine,
        "model_id": note.model_id,
        "prompt_version": note.prompt_version,
        "notice": ENGINE_NOTICES.get(note.engine, {}).get(note.language, ""),
        "error": error,
        "attempts": note.attempts,
        "next_attempt_at": _iso(note.run_after) if note.status == NoteStatus.QUEUED else None,
        "sections": [
            {
                "key": key,
                "label": labels[key],
                "sentences": [sentence_entry(s, spans) for s in sections.get(key, [])],
            }
            for key in SECTION_KEYS
        ],
        "supersedes_version": note.supersedes.version if note.supersedes_id and note.supersedes else None,
        "requested_by": note.requested_by,
        "edited_by": note.edited_by,
        "edited_at": _iso(note.edited_at),
        "signed_by": note.signed_by,
        "signed_at": _iso(note.signed_at),
        "created_at": _iso(note.created_at),
        "updated_at": _iso(note.updated_at),
        "latest_signed_version": max(signed) if signed else None,
        "versions": [
            {
                "version": v.version,
                "status": v.status,
                "engine": v.engine,
                "signed_by": v.signed_by,
                "signed_at": _iso(v.signed_at),
                "created_at": _iso(v.created_at),
            }
            for v in versions or []
        ],
    }


def note_as_text(note: ClinicalNote) -> str:
    """Plain text for pasting into an EHR: one heading per section
    (【主訴・現病歴】 for Japanese, [Subjective] for English), one sentence
    per line, an empty section said to be empty; an unsigned version starts
    with a draft banner."""
    labels = labels_for(note.language)
    japanese = note.language == "ja-JP"
    sections = note.sections or {}
    lines: list[str] = []
    if note.status != NoteStatus.SIGNED:
        lines += [DRAFT_BANNER.get(note.language, DRAFT_BANNER["en-US"]), ""]
    for key in SECTION_KEYS:
        heading = f"【{labels[key]}】" if japanese else f"[{labels[key]}]"
        lines.append(heading)
        texts = [" ".join(s["text"].split()) for s in sections.get(key, [])]
        lines += texts or [EMPTY_SECTION.get(note.language, EMPTY_SECTION["en-US"])]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
