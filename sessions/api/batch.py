"""POST /api/v1/transcriptions/: upload a WAV for batch transcription.
Thin: size gate, form validation, ``transcription.batch.batch_create``."""

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.api.base import ClinicScopedAPIView
from clinics.models import Language
from sessions.api.serializers import SessionSerializer
from sessions.models import ConsentMethod
from sessions.services import CONSENT_NOTE_MAX, EXTERNAL_REF_MAX
from transcription.batch import UploadTooLarge, batch_create
from voiceai.errors import InvalidInput

# Multipart framing around the file (boundaries, part headers, small fields).
_FORM_OVERHEAD = 64 * 1024


class BatchTranscriptionSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="WAV: 16-bit PCM, mono, 8-48 kHz, at most BATCH_UPLOAD_MAX_BYTES.")
    language = serializers.ChoiceField(choices=Language.choices, required=False)
    external_ref = serializers.CharField(required=False, allow_blank=True, max_length=EXTERNAL_REF_MAX)
    consent_method = serializers.ChoiceField(
        choices=ConsentMethod.choices,
        required=False,
        help_text="How the patient consented to the recording; required when the clinic requires consent.",
    )
    consent_note = serializers.CharField(required=False, allow_blank=True, max_length=CONSENT_NOTE_MAX)


class BatchTranscriptionView(ClinicScopedAPIView):
    parser_classes = [MultiPartParser]
    serializer_class = SessionSerializer

    @extend_schema(
        operation_id="transcriptions_create",
        request={"multipart/form-data": BatchTranscriptionSerializer},
        responses={
            202: SessionSerializer,
            400: OpenApiResponse(description="Not a 16-bit PCM mono 8-48 kHz WAV, or invalid fields."),
            409: OpenApiResponse(description="consent_required: the clinic requires consent_method."),
            413: OpenApiResponse(description="Larger than BATCH_UPLOAD_MAX_BYTES."),
            429: OpenApiResponse(description="Quota used up: audio_minutes_exhausted or storage_quota_exceeded."),
        },
        description="Creates a session (source=batch) and transcribes the file in the background; poll "
        "GET /api/v1/sessions/{id}/ for status and progress, then read its transcript.",
    )
    def post(self, request: Request) -> Response:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.BATCH_UPLOAD_MAX_BYTES + _FORM_OVERHEAD:
            raise UploadTooLarge(details={"max_bytes": settings.BATCH_UPLOAD_MAX_BYTES})
        form = BatchTranscriptionSerializer(data=request.data)
        if not form.is_valid():
            raise InvalidInput("The upload has invalid fields.", details=form.errors)
        data = form.validated_data
        session = batch_create(
            principal=self.principal,
            upload=data["file"],
            language=data.get("language"),
            external_ref=data.get("external_ref", ""),
            consent_method=data.get("consent_method", ""),
            consent_note=data.get("consent_note", ""),
        )
        return Response(
            SessionSerializer(session).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/sessions/{session.pk}/"},
        )
