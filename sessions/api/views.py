"""Sessions REST API. Thin: authenticate (base view), look up through the
access layer, call a service or selector, shape the answer."""

from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.access import Principal, access_session
from clinics.api.base import ClinicScopedAPIView, IgnoreFormatNegotiation, validated_data
from clinics.api.pagination import BoundedLimitOffsetPagination
from clinics.api.schema import error_response
from clinics.principals import IssuedToken
from sessions import formats, storage_keys
from sessions.api.ranges import RangeNotSatisfiable, parse_range
from sessions.api.serializers import (
    ConsentSerializer,
    SearchFilterSerializer,
    SearchHitSerializer,
    SegmentConfirmSerializer,
    SegmentCorrectionSerializer,
    SegmentDetailSerializer,
    SessionCreatedSerializer,
    SessionCreateSerializer,
    SessionFilterSerializer,
    SessionSerializer,
    SpeakerRolesSerializer,
    SpeakersSerializer,
    StreamAccessSerializer,
    TranscriptSerializer,
)
from sessions.models import ConsultationSession, SegmentRevision, TranscriptSegment
from sessions.search import search_hit, search_query_parse, transcript_search
from sessions.selectors import (
    session_list,
    session_review_count,
    session_speaker_roles,
    speakers_heard,
    transcript_history,
)
from sessions.services import (
    audio_read_audit,
    consent_record,
    consent_withdraw,
    segment_confirm,
    segment_correct,
    segment_read,
    session_create,
    session_end,
    session_erase,
    session_token_issue,
    speaker_roles_set,
    transcript_read,
    transcript_search_audit,
)
from sessions.storage import storage_aiter_range, storage_size
from voiceai.api_errors import error_body
from voiceai.errors import InvalidInput, NotFound

SESSION_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Session id.")
SEGMENT_ID = OpenApiParameter(
    "segment_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The final's segment_id in the transcript."
)
HISTORY = OpenApiParameter(
    "history", OpenApiTypes.BOOL, default=False, description="json only: each segment's engine text and corrections."
)
ERRORS = {
    401: error_response("Missing or invalid credentials."),
    403: error_response("Clinic suspended or role not allowed."),
    404: error_response("No such session in your clinic."),
}


def stream_access(request: Request, session: ConsultationSession, issued: IssuedToken) -> dict[str, Any]:
    """Socket URLs built from the host and scheme the client used."""
    scheme = "wss" if request.is_secure() else "ws"
    base = f"{scheme}://{request.get_host()}/ws/v1/sessions/{session.pk}"
    return {
        "stream_url": f"{base}/stream",
        "live_url": f"{base}/live",
        "stream_token": issued.token,
        "token_expires_at": issued.expires_at,
    }


class SessionListCreateView(ClinicScopedAPIView):
    serializer_class = SessionSerializer

    @extend_schema(
        operation_id="sessions_list",
        parameters=[SessionFilterSerializer],
        responses={200: SessionSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        filters = SessionFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        page = self.paginate_queryset(session_list(principal=self.principal, **filters.validated_data))
        return self.get_paginated_response(SessionSerializer(page, many=True).data)

    @extend_schema(
        operation_id="sessions_create",
        request=SessionCreateSerializer,
        responses={
            201: SessionCreatedSerializer,
            400: error_response("Invalid body."),
            429: error_response("Quota used up: audio_minutes_exhausted or storage_quota_exceeded."),
            **ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        data = validated_data(SessionCreateSerializer, request.data)
        session = session_create(principal=self.principal, **data)
        issued = session_token_issue(principal=self.principal, session=session)
        body = {**SessionSerializer(session).data, **stream_access(request, session, issued)}
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": f"/api/v1/sessions/{session.pk}/"})


class SessionDetailView(ClinicScopedAPIView):
    serializer_class = SessionSerializer

    @extend_schema(
        operation_id="sessions_retrieve", parameters=[SESSION_ID], responses={200: SessionSerializer, **ERRORS}
    )
    def get(self, request: Request, id: str) -> Response:
        session = access_session(self.principal, id)
        session.needs_review_count = session_review_count(principal=self.principal, session=session)  # type: ignore[attr-defined]
        return Response(SessionSerializer(session).data)

    @extend_schema(
        operation_id="sessions_erase",
        parameters=[SESSION_ID],
        description="Erasure: audio objects, transcript rows and the session are deleted; an audit row stays.",
        responses={204: None, 409: error_response("The session is live; end it first."), **ERRORS},
    )
    def delete(self, request: Request, id: str) -> Response:
        session_erase(principal=self.principal, session=access_session(self.principal, id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionConsentView(ClinicScopedAPIView):
    serializer_class = SessionSerializer

    @extend_schema(
        operation_id="sessions_consent_record",
        parameters=[SESSION_ID],
        request=ConsentSerializer,
        description="Records the patient's consent to this session's recording (who and when are taken from the "
        "caller and the clock). A clinic with consent_required refuses the producer socket with 4428 until this "
        "is done. Audited (consent.record).",
        examples=[OpenApiExample("Verbal consent", value={"method": "verbal", "note": ""}, request_only=True)],
        responses={
            201: SessionSerializer,
            400: error_response("Invalid body."),
            409: error_response("consent_recorded: already recorded for this session."),
            **ERRORS,
        },
    )
    def post(self, request: Request, id: str) -> Response:
        session = access_session(self.principal, id)
        data = validated_data(ConsentSerializer, request.data)
        session = consent_record(principal=self.principal, session=session, **data)
        return Response(SessionSerializer(session).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="sessions_consent_withdraw",
        parameters=[SESSION_ID],
        description="The patient withdraws consent: the session is ended if open, then erased — audio objects, "
        "transcript rows and the session; an audit tombstone (session.erase, reason consent_withdrawn) stays. "
        "Any member of the clinic may do this.",
        responses={
            204: None,
            409: error_response("session_streaming: the recording connection is still finishing; retry."),
            503: error_response("storage_unavailable: nothing was erased; retry."),
            **ERRORS,
        },
    )
    def delete(self, request: Request, id: str) -> Response:
        consent_withdraw(principal=self.principal, session=access_session(self.principal, id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionEndView(ClinicScopedAPIView):
    serializer_class = SessionSerializer

    @extend_schema(
        operation_id="sessions_end", parameters=[SESSION_ID], request=None, responses={200: SessionSerializer, **ERRORS}
    )
    def post(self, request: Request, id: str) -> Response:
        session = session_end(principal=self.principal, session=access_session(self.principal, id))
        return Response(SessionSerializer(session).data)


class SessionStreamTokenView(ClinicScopedAPIView):
    serializer_class = StreamAccessSerializer

    @extend_schema(
        operation_id="sessions_stream_token",
        parameters=[SESSION_ID],
        request=None,
        responses={200: StreamAccessSerializer, 409: error_response("The session has ended."), **ERRORS},
    )
    def post(self, request: Request, id: str) -> Response:
        session = access_session(self.principal, id)
        issued = session_token_issue(principal=self.principal, session=session)
        return Response(stream_access(request, session, issued))


class SessionTranscriptView(ClinicScopedAPIView):
    serializer_class = TranscriptSerializer
    content_negotiation_class = IgnoreFormatNegotiation

    @extend_schema(
        operation_id="sessions_transcript",
        parameters=[
            SESSION_ID,
            OpenApiParameter("format", OpenApiTypes.STR, enum=list(formats.FORMATS), default="json"),
            HISTORY,
        ],
        description="Final segments only, each at its latest revision (clinicians' corrections applied). json "
        "carries times, speaker, confidence and revision, the speaker's role where the engine labelled speakers "
        "(speaker_role; txt/vtt/srt show it as 'Clinician (spk_0)', in the session's language), and the "
        "low-confidence review flag (needs_review, reviewed_by/at; needs_review_count for the session); with "
        "history=true also each segment's engine text and its corrections (who, when, before, after).",
        responses={
            (200, "application/json"): TranscriptSerializer,
            (200, "text/plain"): OpenApiTypes.STR,
            (200, "text/vtt"): OpenApiTypes.STR,
            (200, "application/x-subrip"): OpenApiTypes.STR,
            **ERRORS,
        },
    )
    def get(self, request: Request, id: str) -> Response | HttpResponse:
        fmt = request.query_params.get("format", "json")
        if fmt not in formats.FORMATS:
            raise InvalidInput(details={"format": f"Must be one of {', '.join(formats.FORMATS)}."})
        with_history = _flag(request.query_params.get("history"), name="history")
        session = access_session(self.principal, id)
        segments = transcript_read(principal=self.principal, session=session, fmt=fmt)
        roles = formats.speaker_roles((s.speaker for s in segments), session.speaker_roles)
        if fmt == "json":
            history = transcript_history(principal=self.principal, session=session) if with_history else None
            document = formats.transcript_document(
                segments,
                session_id=session.pk,
                language=session.language,
                history=history,
                roles=roles,
                review_threshold=self.principal.clinic.low_confidence_threshold,
            )
            response = Response(document)
            # Saved as <session id>.json like the other formats, not "download.json".
            response["Content-Disposition"] = f'inline; filename="{session.pk}.json"'
            return response
        text = formats.transcript_render(
            segments, fmt=fmt, session_id=session.pk, language=session.language, roles=roles
        )
        response = HttpResponse(text, content_type=formats.CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'inline; filename="{session.pk}.{fmt}"'
        response["Cache-Control"] = "private, no-store"
        return response


def _flag(value: str | None, *, name: str) -> bool:
    if value in (None, "", "0", "false"):
        return False
    if value in ("1", "true"):
        return True
    raise InvalidInput(details={name: "Must be true or false."})


def _if_match_revision(header: str | None) -> int | None:
    """The revision in an If-Match header (the segment's ETag, ``"3"``)."""
    if header is None:
        return None
    tag = header.strip().removeprefix("W/").strip('"')
    if not tag.isdigit() or len(tag) > 9:
        raise InvalidInput(details={"If-Match": 'Must be the segment\'s ETag, e.g. "3".'})
    return int(tag)


def _segment_body(
    principal: Principal, session: ConsultationSession, segment: TranscriptSegment, revisions: list[SegmentRevision]
) -> dict[str, Any]:
    body = formats.transcript_document(
        [segment],
        session_id="",
        language="",
        history={segment.pk: revisions},
        roles=session_speaker_roles(principal=principal, session=session) if segment.speaker else None,
        review_threshold=principal.clinic.low_confidence_threshold,
    )
    return body["segments"][0]


def _revision_sent(body_revision: int | None, if_match: str | None) -> int:
    """The revision the caller read: in the body, or the If-Match ETag."""
    revision = body_revision if body_revision is not None else _if_match_revision(if_match)
    if revision is None:
        raise InvalidInput(
            "Send the revision you read (revision, or If-Match).",
            code="revision_required",
            details={"revision": "Required (or an If-Match header)."},
        )
    return revision


def _with_etag(response: Response, segment: TranscriptSegment) -> Response:
    response["ETag"] = f'"{segment.revision}"'
    response["Cache-Control"] = "private, no-store"
    return response


class SegmentDetailView(ClinicScopedAPIView):
    serializer_class = SegmentDetailSerializer

    @extend_schema(
        operation_id="sessions_segment_retrieve",
        parameters=[SESSION_ID, SEGMENT_ID],
        description="One final with its engine text and corrections; ETag is its revision. Audited as a "
        "transcript read.",
        responses={200: SegmentDetailSerializer, **ERRORS},
    )
    def get(self, request: Request, id: str, segment_id: str) -> Response:
        session = access_session(self.principal, id)
        segment, revisions = segment_read(principal=self.principal, session=session, segment_id=segment_id)
        return _with_etag(Response(_segment_body(self.principal, session, segment, revisions)), segment)

    @extend_schema(
        operation_id="sessions_segment_correct",
        parameters=[
            SESSION_ID,
            SEGMENT_ID,
            OpenApiParameter("If-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, description='ETag, e.g. "3".'),
        ],
        request=SegmentCorrectionSerializer,
        description="A clinician's correction of a final's text: a new revision (who, when, before, after); the "
        "engine's text is kept; every transcript read and export uses the latest revision. The revision you read "
        "is required (revision in the body, or If-Match); if the segment changed since, 409 revision_conflict "
        "with details.revision. Audited (transcript.correct).",
        examples=[OpenApiExample("Correct a final", value={"text": "No fever since Monday.", "revision": 0})],
        responses={
            200: SegmentDetailSerializer,
            400: error_response("Invalid body, or no revision given (revision_required)."),
            409: error_response("revision_conflict: the segment changed since you read it."),
            **ERRORS,
        },
    )
    def patch(self, request: Request, id: str, segment_id: str) -> Response:
        session = access_session(self.principal, id)
        data = validated_data(SegmentCorrectionSerializer, request.data)
        revision = _revision_sent(data.get("revision"), request.headers.get("If-Match"))
        segment_correct(
            principal=self.principal, session=session, segment_id=segment_id, text=data["text"], revision=revision
        )
        segment, revisions = segment_read(principal=self.principal, session=session, segment_id=segment_id)
        return _with_etag(Response(_segment_body(self.principal, session, segment, revisions)), segment)


class SegmentConfirmView(ClinicScopedAPIView):
    serializer_class = SegmentDetailSerializer

    @extend_schema(
        operation_id="sessions_segment_confirm",
        parameters=[
            SESSION_ID,
            SEGMENT_ID,
            OpenApiParameter("If-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, description='ETag, e.g. "3".'),
        ],
        request=SegmentConfirmSerializer,
        description="A clinician confirms a final as heard (low-confidence review): who and when are stored "
        "(reviewed_by, reviewed_at) and needs_review clears; a correction clears it too. The revision you read is "
        "required (revision in the body, or If-Match); if the segment changed since, 409 revision_conflict. "
        "Confirming again keeps the first confirmation. Audited (transcript.confirm).",
        examples=[OpenApiExample("Confirm a final", value={"revision": 0}, request_only=True)],
        responses={
            200: SegmentDetailSerializer,
            400: error_response("Invalid body, or no revision given (revision_required)."),
            409: error_response("revision_conflict: the segment changed since you read it."),
            **ERRORS,
        },
    )
    def post(self, request: Request, id: str, segment_id: str) -> Response:
        session = access_session(self.principal, id)
        data = validated_data(SegmentConfirmSerializer, request.data if request.data else {})
        revision = _revision_sent(data.get("revision"), request.headers.get("If-Match"))
        segment_confirm(principal=self.principal, session=session, segment_id=segment_id, revision=revision)
        segment, revisions = segment_read(principal=self.principal, session=session, segment_id=segment_id)
        return _with_etag(Response(_segment_body(self.principal, session, segment, revisions)), segment)


def _speakers_body(principal: Principal, session: ConsultationSession) -> dict[str, Any]:
    speakers, was_set = speakers_heard(principal=principal, session=session)
    roles = formats.speaker_roles((s.label for s in speakers), session.speaker_roles)
    return {
        "speakers": [
            {"label": s.label, "role": s.role, "segments": s.segments, "first_ms": s.first_ms} for s in speakers
        ],
        "roles": roles,
        "guessed": not was_set and bool(roles),
        "set_by": session.speaker_roles_set_by,
    }


class SessionSpeakersView(ClinicScopedAPIView):
    serializer_class = SpeakersSerializer

    @extend_schema(
        operation_id="sessions_speakers",
        parameters=[SESSION_ID],
        description="The speaker labels the engine put on the session's finals (AWS with speaker labels; none "
        "for engines without), each with its role: as a person set it, or the first guess (the first label "
        "heard is the clinician).",
        responses={200: SpeakersSerializer, **ERRORS},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(_speakers_body(self.principal, access_session(self.principal, id)))

    @extend_schema(
        operation_id="sessions_speakers_set",
        parameters=[SESSION_ID],
        request=SpeakerRolesSerializer,
        description="Sets each speaker label's role (clinician, patient, family, other), replacing the mapping "
        "and the first guess; {} goes back to the guess. A label may be set before it is heard. Exports and the "
        "transcript show the roles. Any member of the clinic; audited (session.speaker_roles).",
        examples=[
            OpenApiExample(
                "Doctor and patient", value={"roles": {"spk_0": "clinician", "spk_1": "patient"}}, request_only=True
            )
        ],
        responses={200: SpeakersSerializer, 400: error_response("Invalid labels or roles."), **ERRORS},
    )
    def put(self, request: Request, id: str) -> Response:
        session = access_session(self.principal, id)
        data = validated_data(SpeakerRolesSerializer, request.data)
        session = speaker_roles_set(principal=self.principal, session=session, roles=data["roles"])
        return Response(_speakers_body(self.principal, session))


class SessionAudioView(ClinicScopedAPIView):
    content_negotiation_class = IgnoreFormatNegotiation

    @extend_schema(
        operation_id="sessions_audio",
        parameters=[
            SESSION_ID,
            OpenApiParameter("Range", OpenApiTypes.STR, OpenApiParameter.HEADER, description="bytes=START-END"),
        ],
        description="The recording as 16-bit PCM WAV. Honours a single HTTP byte range (206/416).",
        responses={
            (200, "audio/wav"): OpenApiTypes.BINARY,
            (206, "audio/wav"): OpenApiTypes.BINARY,
            416: error_response("Range not satisfiable."),
            **ERRORS,
        },
    )
    def get(self, request: Request, id: str) -> Response | StreamingHttpResponse:
        session = access_session(self.principal, id)
        key = storage_keys.audio_wav_key(session)
        size = storage_size(key)
        if size is None:
            raise NotFound("This session has no stored audio.", code="audio_not_available")
        try:
            byte_range = parse_range(request.headers.get("Range"), size)
        except RangeNotSatisfiable:
            response = Response(error_body("range_not_satisfiable", "The range is outside the audio."), status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        start, end = byte_range if byte_range is not None else (0, size - 1)
        audio_read_audit(principal=self.principal, session=session, start=start, end=end, size=size)
        length = end - start + 1
        response = StreamingHttpResponse(
            storage_aiter_range(key, start=start, length=length),
            status=206 if byte_range is not None else 200,
            content_type="audio/wav",
        )
        response["Content-Length"] = str(length)
        response["Accept-Ranges"] = "bytes"
        if byte_range is not None:
            response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Disposition"] = f'inline; filename="{session.pk}.wav"'
        response["Cache-Control"] = "private, no-store"
        return response


class SearchPagination(BoundedLimitOffsetPagination):
    """Search pages are small: each hit carries transcript text and an audit row."""

    default_limit = 20
    max_limit = 100


class TranscriptSearchView(ClinicScopedAPIView):
    serializer_class = SearchHitSerializer
    pagination_class = SearchPagination

    @extend_schema(
        operation_id="transcripts_search",
        parameters=[SearchFilterSerializer],
        description=(
            "Search the clinic's final transcript segments (Japanese and English) for words or quoted phrases; "
            "every term must occur. Best matches first, each with its session, segment and times. "
            "Every consultation in the page gets a transcript.read audit row."
        ),
        responses={200: SearchHitSerializer(many=True), 400: error_response("Invalid query."), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        filters = SearchFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = dict(filters.validated_data)
        query = search_query_parse(params.pop("q"))
        page = self.paginate_queryset(transcript_search(principal=self.principal, query=query, **params))
        transcript_search_audit(principal=self.principal, segments=page)
        hits = [search_hit(segment, query) for segment in page]
        return self.get_paginated_response(SearchHitSerializer(hits, many=True).data)
