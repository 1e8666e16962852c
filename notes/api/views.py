"""Notes REST API. Thin: authenticate (base view), look up the session
through the access layer, call a service, shape the answer."""

import json
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.access import access_session
from clinics.api.base import ClinicScopedAPIView, IgnoreFormatNegotiation, validated_data
from clinics.api.schema import error_response
from notes import fhir
from notes.api.serializers import (
    NoteEditSerializer,
    NoteGenerateSerializer,
    NoteSerializer,
    NoteSignSerializer,
)
from notes.formats import note_as_text, note_document
from notes.selectors import note_evidence_spans, note_versions
from notes.services import NoteView, note_edit, note_generate, note_read, note_retry, note_sign
from sessions import formats
from sessions.services import transcript_read
from voiceai.errors import InvalidInput

SESSION_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Session id.")
VERSION = OpenApiParameter(
    "version", OpenApiTypes.INT, description="A version of the note (default: the latest, whatever its status)."
)
ERRORS = {
    401: error_response("Missing or invalid credentials."),
    403: error_response("Clinic suspended or role not allowed."),
    404: error_response("No such session in your clinic (not_found), or no note yet (note_not_found)."),
}
CONFLICT = error_response(
    "note_conflict (details: the current version and revision), note_generating, note_not_editable."
)

EXAMPLE_NOTE = {
    "id": "5d0c7d3e-3b1f-4a51-9d0b-0d6f0c8b2a11",
    "session_id": "0b8d0c3a-6a59-4a7e-8f38-1f3b2b1e9c20",
    "version": 1,
    "revision": 0,
    "status": "draft",
    "progress": 100,
    "language": "ja-JP",
    "engine": "extractive",
    "model_id": "",
    "prompt_version": "extractive-rules-1",
    "notice": "この下書きは文字起こしの文をルールで4つの欄に振り分けたものです。文章は生成していません。"
    "内容を確認・修正してから署名してください。",
    "error": None,
    "attempts": 1,
    "next_attempt_at": None,
    "sections": [
        {
            "key": "subjective",
            "label": "主訴・現病歴",
            "sentences": [
                {
                    "id": "n1",
                    "text": "先週の火曜日から頭痛がひどくて、夜も眠れません。",
                    "edited": False,
                    "evidence": [{"segment_id": "seg-1", "start_ms": 4000, "end_ms": 7500}],
                    "start_ms": 4000,
                    "end_ms": 7500,
                }
            ],
        },
        {"key": "objective", "label": "所見", "sentences": []},
        {"key": "assessment", "label": "評価", "sentences": []},
        {
            "key": "plan",
            "label": "計画",
            "sentences": [
                {
                    "id": "n2",
                    "text": "鎮痛薬を出しますので、一週間後にもう一度来てください。",
                    "edited": False,
                    "evidence": [{"segment_id": "seg-4", "start_ms": 16000, "end_ms": 19500}],
                    "start_ms": 16000,
                    "end_ms": 19500,
                }
            ],
        },
    ],
    "supersedes_version": None,
    "requested_by": "system:notes",
    "edited_by": "",
    "edited_at": None,
    "signed_by": "",
    "signed_at": None,
    "created_at": "2026-12-05T09:00:00+00:00",
    "updated_at": "2026-12-05T09:00:04+00:00",
    "latest_signed_version": None,
    "versions": [
        {
            "version": 1,
            "status": "draft",
            "engine": "extractive",
            "signed_by": "",
            "signed_at": None,
            "created_at": "2026-12-05T09:00:00+00:00",
        }
    ],
}


def _version_param(request: Request) -> int | None:
    raw = request.query_params.get("version")
    if raw in (None, ""):
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidInput(details={"version": "Must be a positive integer."})
    return int(raw)


def _body(view: NoteView) -> dict[str, Any]:
    return note_document(view.note, spans=view.spans, versions=view.versions)


def _note_body(principal: Any, session: Any, note: Any) -> dict[str, Any]:
    """The answer of a write: the note as it is now (the caller just wrote
    or asked for it; the write's own audit row covers it)."""
    spans = note_evidence_spans(principal=principal, session=session, note=note)
    return note_document(note, spans=spans, versions=note_versions(principal=principal, session=session))


class SessionNoteView(ClinicScopedAPIView):
    serializer_class = NoteSerializer

    @extend_schema(
        operation_id="sessions_note_retrieve",
        parameters=[
            SESSION_ID,
            VERSION,
            OpenApiParameter(
                "signed",
                OpenApiTypes.BOOL,
                default=False,
                description="The latest signed version (what integrators chart); 409 note_not_signed if none.",
            ),
        ],
        description="The session's SOAP note: status (queued, generating, draft, failed, signed, superseded) and "
        "progress of its job, the sections with their sentences, each sentence's evidence (the transcript's "
        "segment ids with their start_ms/end_ms in the recording), the engine, model and prompt version, who "
        "signed it and when, and the list of versions. A failed job says why in error (code, retryable): POST "
        "retry/. Audited (note.read).",
        examples=[OpenApiExample("A Japanese draft", value=EXAMPLE_NOTE, response_only=True)],
        responses={
            200: NoteSerializer,
            400: error_response("Invalid version."),
            409: error_response("note_not_signed: signed=true and no version is signed yet."),
            **ERRORS,
        },
    )
    def get(self, request: Request, id: str) -> Response:
        session = access_session(self.principal, id)
        signed = request.query_params.get("signed") in ("1", "true")
        view = note_read(
            principal=self.principal, session=session, version=_version_param(request), signed=signed, fmt="json"
        )
        return Response(_body(view))

    @extend_schema(
        operation_id="sessions_note_edit",
        parameters=[SESSION_ID],
        request=NoteEditSerializer,
        description="The clinician's edit of the latest version: every sentence, by section. A sentence sent with "
        "its id keeps its evidence (edited: true if its text changed); one without an id is new, with no "
        "evidence; a sentence left out is dropped. version and revision are what you read: if the note moved "
        "on, 409 note_conflict with the current ones. A draft changes in place (revision + 1); a signed version "
        "never changes — the edit becomes version + 1, a draft that supersedes it once signed. Audited "
        "(note.edit).",
        examples=[
            OpenApiExample(
                "Rewrite one sentence, add one",
                value={
                    "version": 1,
                    "revision": 0,
                    "sections": {
                        "subjective": [{"id": "n1", "text": "先週火曜日から頭痛。夜間不眠あり。"}],
                        "objective": [],
                        "assessment": [{"text": "緊張型頭痛の疑い。"}],
                        "plan": [{"id": "n2", "text": "鎮痛薬処方。1週間後に再診。"}],
                    },
                },
                request_only=True,
            )
        ],
        responses={200: NoteSerializer, 400: error_response("Invalid sentences."), 409: CONFLICT, **ERRORS},
    )
    def put(self, request: Request, id: str) -> Response:
        session = access_session(self.principal, id)
        data = validated_data(NoteEditSerializer, request.data)
        note = note_edit(principal=self.principal, session=session, **data)
        return Response(_note_body(self.principal, session, note))


class SessionNoteTextView(ClinicScopedAPIView):
    content_negotiation_class = IgnoreFormatNegotiation

    @extend_schema(
        operation_id="sessions_note_text",
        parameters=[SESSION_ID, VERSION],
        description="The note as plain text laid out for pasting into an EHR: 【主訴・現病歴】【所見】【評価】【計画】 "
        "headings for a Japanese consultation ([Subjective]... for English), one sentence a line. By default the "
        "latest signed version (409 note_not_signed if none); with version, that version (an unsigned one starts "
        "with a draft banner). Audited (note.read).",
        examples=[
            OpenApiExample(
                "Japanese",
                value="【主訴・現病歴】\n先週の火曜日から頭痛がひどくて、夜も眠れません。\n\n【所見】\n（記載なし）\n\n"
                "【評価】\n（記載なし）\n\n【計画】\n鎮痛薬を出しますので、一週間後にもう一度来てください。\n",
                response_only=True,
                media_type="text/plain",
            )
        ],
        responses={(200, "text/plain"): OpenApiTypes.STR, 409: error_response("note_not_signed."), **ERRORS},
    )
    def get(self, request: Request, id: str) -> HttpResponse:
        session = access_session(self.principal, id)
        version = _version_param(request)
        view = note_read(principal=self.principal, session=session, version=version, signed=version is None, fmt="text")
        response = HttpResponse(note_as_text(view.note), content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = f'inline; filename="{session.pk}-note-v{view.note.version}.txt"'
        response["Cache-Control"] = "private, no-store"
        return response


class SessionNoteFhirView(ClinicScopedAPIView):
    content_negotiation_class = IgnoreFormatNegotiation

    @extend_schema(
        operation_id="sessions_note_fhir",
        parameters=[SESSION_ID],
        description="The latest signed note as a FHIR R4 Composition (application/fhir+json): status final, one "
        "section per SOAP heading (LOINC 61150-9, 61149-1, 51848-0, 18776-5) with its sentences as narrative, "
        "the signer as legal attester, relatesTo transforms → the transcript (urn:uuid:<session id>) and "
        "replaces → the version it supersedes. Validated with fhir.resources. 409 note_not_signed if none is "
        "signed. Audited (note.read).",
        responses={
            (200, "application/fhir+json"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                examples=[
                    OpenApiExample(
                        "Composition (abridged)",
                        value={
                            "resourceType": "Composition",
                            "status": "final",
                            "language": "ja-JP",
                            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
                            "title": "診療記録（SOAP）",
                            "section": [
                                {"title": "主訴・現病歴", "text": {"status": "generated", "div": "<div>…</div>"}}
                            ],
                        },
                    )
                ],
            ),
            409: error_response("note_not_signed."),
            **ERRORS,
        },
    )
    def get(self, request: Request, id: str) -> HttpResponse:
        session = access_session(self.principal, id)
        view = note_read(principal=self.principal, session=session, signed=True, fmt="fhir")
        return _fhir_response(fhir.note_composition(note=view.note, session=session))


class SessionTranscriptFhirView(ClinicScopedAPIView):
    content_negotiation_class = IgnoreFormatNegotiation

    @extend_schema(
        operation_id="sessions_transcript_fhir",
        parameters=[SESSION_ID],
        description="The transcript as a FHIR R4 DocumentReference (application/fhir+json): the plain-text "
        "transcript (latest revisions, speaker roles) as a base64 attachment, the session id as "
        "masterIdentifier (urn:uuid:...), the integrator's external_ref as an identifier. Validated with "
        "fhir.resources. Audited (transcript.read, format fhir).",
        responses={
            (200, "application/fhir+json"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                examples=[
                    OpenApiExample(
                        "DocumentReference (abridged)",
                        value={
                            "resourceType": "DocumentReference",
                            "status": "current",
                            "docStatus": "final",
                            "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0b8d0c3a-..."},
                            "content": [
                                {
                                    "attachment": {
                                        "contentType": "text/plain; charset=utf-8",
                                        "language": "ja-JP",
                                        "data": "WzAwOjAwOjAwLjAwMCAtLT4g...",
                                    }
                                }
                            ],
                        },
                    )
                ],
            ),
            **ERRORS,
        },
    )
    def get(self, request: Request, id: str) -> HttpResponse:
        session = access_session(self.principal, id)
        segments = transcript_read(principal=self.principal, session=session, fmt="fhir")
        roles = formats.speaker_roles((s.speaker for s in segments), session.speaker_roles)
        text = formats.transcript_render(
            segments, fmt="txt", session_id=session.pk, language=session.language, roles=roles
        )
        return _fhir_response(fhir.transcript_document_reference(session=session, transcript_text=text))


def _fhir_response(resource: dict[str, Any]) -> HttpResponse:
    response = HttpResponse(json.dumps(resource, ensure_ascii=False), content_type=fhir.FHIR_CONTENT_TYPE)
    response["Cache-Control"] = "private, no-store"
    return response


class SessionNoteGenerateView(ClinicScopedAPIView):
    serializer_class = NoteSerializer

    @extend_schema(
        operation_id="sessions_note_generate",
        parameters=[SESSION_ID],
        request=NoteGenerateSerializer,
        description="Asks for a (new) draft of an ended session's note; the job runs in the background (GET the "
        "note for status and progress). While a job is queued or running, that job is returned (idempotent). "
        "An unsigned latest version is made again in place (its edits dropped, its revision moves on); after a "
        "signed version a new version is made. Drafts are also made automatically when a session ends. "
        "Audited (note.generate).",
        examples=[
            OpenApiExample("Platform default engine", value={}, request_only=True),
            OpenApiExample("Bedrock (clinic opted in)", value={"engine": "bedrock"}, request_only=True),
        ],
        responses={
            202: NoteSerializer,
            403: error_response("bedrock_not_enabled: the clinic has not opted in to Bedrock."),
            409: error_response("session_not_ended: end the session first."),
            **{k: v for k, v in ERRORS.items() if k != 403},
        },
    )
    def post(self, request: Request, id: str) -> Response:
        session = access_session(self.principal, id)
        data = validated_data(NoteGenerateSerializer, request.data if request.data else {})
        note = note_generate(principal=self.principal, session=session, engine=data.get("engine"))
        return Response(_note_body(self.principal, session, note), status=status.HTTP_202_ACCEPTED)


class SessionNoteRetryView(ClinicScopedAPIView):
    serializer_class = NoteSerializer

    @extend_schema(
        operation_id="sessions_note_retry",
        parameters=[SESSION_ID],
        request=None,
        description="Runs a failed note job again with the same engine (status failed → queued). Audited "
        "(note.generate, reason retry).",
        responses={202: NoteSerializer, 409: error_response("note_not_failed: the note is not failed."), **ERRORS},
    )
    def post(self, request: Request, id: str) -> Response:
        session = access_session(self.principal, id)
        note = note_retry(principal=self.principal, session=session)
        return Response(_note_body(self.principal, session, note), status=status.HTTP_202_ACCEPTED)


class SessionNoteSignView(ClinicScopedAPIView):
    serializer_class = NoteSerializer

    @extend_schema(
        operation_id="sessions_note_sign",
        parameters=[SESSION_ID],
        request=NoteSignSerializer,
        description="Signs the latest version as read (version and revision; 409 note_conflict if it moved on). "
        "A signed version is immutable and is what GET note/?signed=true, note/text/ and note/fhir/ serve; the "
        "signed version it was edited from becomes superseded. Signing the signed latest version again changes "
        "nothing. Audited (note.sign).",
        examples=[OpenApiExample("Sign version 1", value={"version": 1, "revision": 2}, request_only=True)],
        responses={200: NoteSerializer, 409: CONFLICT, **ERRORS},
    )
    def post(self, request: Request, id: str) -> Response:
        session = access_session(self.principal, id)
        data = validated_data(NoteSignSerializer, request.data)
        note = note_sign(principal=self.principal, session=session, **data)
        return Response(_note_body(self.principal, session, note))
