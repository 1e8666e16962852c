"""FHIR R4 exports for EHRs, built and validated with ``fhir.resources``
(its R4B models: FHIR 4.3, whose Composition and DocumentReference are
R4's, field for field).

- the transcript as a ``DocumentReference`` (the plain-text transcript as
  its attachment, base64);
- the signed note as a ``Composition`` (status final, one section per SOAP
  heading with LOINC codes, the clinician's signature as a legal attester,
  ``relatesTo`` transforms → the transcript's document).

No patient resource exists here: the integrator's ``external_ref`` is
carried as an identifier for their EHR to match; no name, no birth date.
"""

import base64
import html
from datetime import datetime
from typing import Any

from fhir.resources.R4B.composition import Composition
from fhir.resources.R4B.documentreference import DocumentReference

from notes.formats import labels_for
from notes.models import SECTION_KEYS, ClinicalNote
from sessions.models import ConsultationSession

FHIR_CONTENT_TYPE = "application/fhir+json; charset=utf-8"
LOINC = "http://loinc.org"
SESSION_SYSTEM = "urn:ietf:rfc:3986"
EXTERNAL_REF_SYSTEM = "urn:voiceai:external-ref"
NOTE_SYSTEM = "urn:voiceai:note"

# LOINC codes of the SOAP sections (as C-CDA's progress note uses them).
SECTION_CODES = {
    "subjective": ("61150-9", "Subjective Narrative"),
    "objective": ("61149-1", "Objective Narrative"),
    "assessment": ("51848-0", "Evaluation note"),
    "plan": ("18776-5", "Plan of care note"),
}
NOTE_TYPE = ("11506-3", "Progress note")
TRANSCRIPT_TYPE = ("34109-9", "Note")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _identifiers(session: ConsultationSession) -> list[dict[str, Any]]:
    identifiers = [{"system": SESSION_SYSTEM, "value": f"urn:uuid:{session.pk}"}]
    if session.external_ref:
        identifiers.append({"system": EXTERNAL_REF_SYSTEM, "value": session.external_ref})
    return identifiers


def transcript_document_reference(*, session: ConsultationSession, transcript_text: str) -> dict[str, Any]:
    """The transcript as a validated R4 DocumentReference (a JSON dict)."""
    resource = DocumentReference.model_validate(
        {
            "resourceType": "DocumentReference",
            "id": str(session.pk),
            "masterIdentifier": {"system": SESSION_SYSTEM, "value": f"urn:uuid:{session.pk}"},
            "identifier": _identifiers(session)[1:],
            "status": "current",
            "docStatus": "final",
            "type": {"coding": [{"system": LOINC, "code": TRANSCRIPT_TYPE[0], "display": TRANSCRIPT_TYPE[1]}],
                     "text": "Consultation transcript"},
            "date": _iso(session.ended_at or session.created_at),
            "description": "Transcript of a recorded consultation (final segments, clinicians' corrections applied).",
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain; charset=utf-8",
                        "language": session.language,
                        "data": base64.b64encode(transcript_text.encode()).decode("ascii"),
                        "title": f"{session.pk}.txt",
                        "creation": _iso(session.ended_at or session.created_at),
                    }
                }
            ],
            "context": {
                "period": {"start": _iso(session.started_at or session.created_at), "end": _iso(session.ended_at)}
            },
        }
    )  # fmt: skip
    return resource.model_dump(mode="json", exclude_none=True)


def _narrative(sentences: list[str], empty: str) -> dict[str, str]:
    body = "".join(f"<p>{html.escape(text)}</p>" for text in sentences) or f"<p>{html.escape(empty)}</p>"
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def note_composition(*, note: ClinicalNote, session: ConsultationSession) -> dict[str, Any]:
    """A signed note as a validated R4 Composition (a JSON dict)."""
    labels = labels_for(note.language)
    sections = note.sections or {}
    signer = {"display": note.signed_by}
    empty = "（記載なし）" if note.language == "ja-JP" else "(none)"
    resource = Composition.model_validate(
        {
            "resourceType": "Composition",
            "id": str(note.pk),
            "language": note.language,
            # Version-independent: every version of a session's note shares it.
            "identifier": {"system": NOTE_SYSTEM, "value": str(session.pk)},
            "status": "final",
            "type": {"coding": [{"system": LOINC, "code": NOTE_TYPE[0], "display": NOTE_TYPE[1]}]},
            "date": _iso(note.signed_at),
            "author": [signer],
            "title": "診療記録（SOAP）" if note.language == "ja-JP" else "Consultation note (SOAP)",
            "attester": [{"mode": "legal", "time": _iso(note.signed_at), "party": signer}],
            "relatesTo": [
                {
                    "code": "transforms",
                    "targetIdentifier": {"system": SESSION_SYSTEM, "value": f"urn:uuid:{session.pk}"},
                }
            ]
            + (
                [{"code": "replaces", "targetReference": {"reference": f"Composition/{note.supersedes_id}"}}]
                if note.supersedes_id
                else []
            ),
            "event": [{"period": {"start": _iso(session.started_at or session.created_at),
                                  "end": _iso(session.ended_at)}}],
            "section": [
                {
                    "title": labels[key],
                    "code": {"coding": [{"system": LOINC, "code": SECTION_CODES[key][0],
                                         "display": SECTION_CODES[key][1]}]},
                    "text": _narrative([s["text"] for s in sections.get(key, [])], empty),
                }
                for key in SECTION_KEYS
            ],
        }
    )  # fmt: skip
    return resource.model_dump(mode="json", exclude_none=True)
