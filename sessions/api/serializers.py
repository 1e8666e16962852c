"""Shapes of the sessions API. Serializers only shape and type-check data;
decisions live in ``sessions.services``."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clinics.api.fields import StrictCharField, StrictChoiceField, StrictIntegerField
from clinics.models import Language
from sessions.models import ConsentMethod, ConsultationSession, SessionStatus, SpeakerRole
from sessions.services import CONSENT_NOTE_MAX, EXTERNAL_REF_MAX, SAMPLE_RATE_MAX, SAMPLE_RATE_MIN, SEGMENT_TEXT_MAX


class SessionSerializer(serializers.ModelSerializer):
    needs_review_count = serializers.SerializerMethodField(
        help_text="Finals whose engine confidence is below the clinic's low_confidence_threshold and that no "
        "clinician has confirmed or corrected yet. In the list and retrieve answers; null in others."
    )

    @extend_schema_field(OpenApiTypes.INT)
    def get_needs_review_count(self, obj: ConsultationSession) -> int | None:
        return getattr(obj, "needs_review_count", None)

    class Meta:
        model = ConsultationSession
        fields = [
            "id",
            "status",
            "failure_reason",
            "language",
            "engine",
            "external_ref",
            "sample_rate",
            "source",
            "progress",
            "created_at",
            "started_at",
            "ended_at",
            "audio_duration_ms",
            "audio_bytes",
            "audio_sha256",
            "consent_method",
            "consent_recorded_at",
            "consent_recorded_by",
            "consent_note",
            "speaker_roles",
            "needs_review_count",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "speaker_roles": {
                "help_text": 'Speaker labels mapped to roles as a person set them ({"spk_0": "clinician"}); '
                "empty: not set, transcripts use the first guess (see /speakers/)."
            },
            "consent_method": {"help_text": "How the patient consented (verbal, written); empty: not recorded."},
            "consent_recorded_by": {"help_text": "Who recorded the consent: user:<id> or api-key:<prefix>."},
        }


class SessionCreateSerializer(serializers.Serializer):
    external_ref = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=EXTERNAL_REF_MAX,
        help_text="Your opaque id for the consultation (never a patient name).",
    )
    language = StrictChoiceField(
        choices=Language.choices, required=False, help_text="Defaults to the clinic's language."
    )
    sample_rate = StrictIntegerField(required=False, min_value=SAMPLE_RATE_MIN, max_value=SAMPLE_RATE_MAX)
    consent_method = StrictChoiceField(
        choices=ConsentMethod.choices,
        required=False,
        help_text="Record the patient's consent with the session (verbal or written). A clinic that requires "
        "consent refuses the producer socket (4428) until it is recorded, here or at /consent/.",
    )
    consent_note = StrictCharField(
        required=False, allow_blank=True, max_length=CONSENT_NOTE_MAX, help_text="Optional, with consent_method."
    )


class ConsentSerializer(serializers.Serializer):
    method = StrictChoiceField(choices=ConsentMethod.choices, help_text="How the patient consented.")
    note = StrictCharField(
        required=False, allow_blank=True, max_length=CONSENT_NOTE_MAX, help_text="e.g. where the signed form is."
    )


class StreamAccessSerializer(serializers.Serializer):
    """What a client needs to open the session's sockets."""

    stream_url = serializers.CharField(help_text="WebSocket URL for sending audio.")
    live_url = serializers.CharField(help_text="WebSocket URL for watching the live transcript.")
    stream_token = serializers.CharField(help_text="Single-use, valid for STREAM_TOKEN_TTL_SECONDS (60 s).")
    token_expires_at = serializers.DateTimeField()


class SessionCreatedSerializer(SessionSerializer):
    stream_url = serializers.CharField()
    live_url = serializers.CharField()
    stream_token = serializers.CharField()
    token_expires_at = serializers.DateTimeField()

    class Meta(SessionSerializer.Meta):
        fields = [*SessionSerializer.Meta.fields, "stream_url", "live_url", "stream_token", "token_expires_at"]
        read_only_fields = fields


class SessionFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=SessionStatus.choices, required=False)
    created_after = serializers.DateTimeField(required=False, help_text="Inclusive, ISO 8601.")
    created_before = serializers.DateTimeField(required=False, help_text="Exclusive, ISO 8601.")
    external_ref = serializers.CharField(required=False, max_length=EXTERNAL_REF_MAX)


class SegmentRevisionSerializer(serializers.Serializer):
    revision = serializers.IntegerField(help_text="The segment's revision this correction made.")
    text_before = serializers.CharField()
    text_after = serializers.CharField()
    edited_by = serializers.CharField(help_text="user:<id> or api-key:<prefix>.")
    edited_at = serializers.DateTimeField()


class TranscriptSegmentSerializer(serializers.Serializer):
    segment_id = serializers.CharField()
    revision = serializers.IntegerField(
        help_text="Bumped by each correction; send it back (revision or If-Match) to correct the segment."
    )
    start_ms = serializers.IntegerField()
    end_ms = serializers.IntegerField()
    text = serializers.CharField()
    speaker = serializers.CharField()
    confidence = serializers.FloatField(allow_null=True)
    speaker_role = serializers.ChoiceField(
        choices=SpeakerRole.choices,
        allow_null=True,
        required=False,
        help_text="The role of the segment's speaker label, where known (set, or the first guess); only on "
        "segments with a speaker label.",
    )
    needs_review = serializers.BooleanField(
        help_text="The engine's confidence is below the clinic's threshold and no clinician has confirmed or "
        "corrected the segment: check it first."
    )
    reviewed_by = serializers.CharField(help_text="Who confirmed or corrected it (user:<id> or api-key:<prefix>).")
    reviewed_at = serializers.DateTimeField(allow_null=True)
    original_text = serializers.CharField(required=False, help_text="With history=1: the engine's text.")
    revisions = SegmentRevisionSerializer(many=True, required=False, help_text="With history=1: the corrections.")


class SegmentDetailSerializer(TranscriptSegmentSerializer):
    original_text = serializers.CharField(help_text="The engine's text.")
    revisions = SegmentRevisionSerializer(many=True, help_text="The corrections, oldest first.")


class SegmentCorrectionSerializer(serializers.Serializer):
    text = StrictCharField(max_length=SEGMENT_TEXT_MAX, help_text="The corrected text of the final.")
    revision = StrictIntegerField(
        required=False,
        min_value=0,
        help_text="The revision you read (or send If-Match with the ETag); a segment changed since answers 409.",
    )


class SegmentConfirmSerializer(serializers.Serializer):
    revision = StrictIntegerField(
        required=False,
        min_value=0,
        help_text="The revision you read (or send If-Match with the ETag); a segment changed since answers 409.",
    )


class TranscriptSerializer(serializers.Serializer):
    session_id = serializers.UUIDField()
    language = serializers.CharField()
    speaker_roles = serializers.DictField(
        child=serializers.ChoiceField(choices=SpeakerRole.choices),
        required=False,
        help_text="Only when the engine labelled speakers: each label's role (set, or the first guess).",
    )
    needs_review_count = serializers.IntegerField(help_text="How many segments have needs_review.")
    segments = TranscriptSegmentSerializer(many=True)


class SpeakerSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="The engine's speaker label, e.g. spk_0.")
    role = serializers.ChoiceField(choices=SpeakerRole.choices, allow_null=True, help_text="null: not known.")
    segments = serializers.IntegerField(help_text="Finals spoken under this label.")
    first_ms = serializers.IntegerField(help_text="When the label was first heard.")


class SpeakersSerializer(serializers.Serializer):
    speakers = SpeakerSerializer(many=True, help_text="The labels heard, first heard first.")
    roles = serializers.DictField(
        child=serializers.ChoiceField(choices=SpeakerRole.choices), help_text="Each label's role in effect."
    )
    guessed = serializers.BooleanField(
        help_text="true: nobody has set the roles; the first label heard is taken for the clinician."
    )
    set_by = serializers.CharField(help_text="Who set the roles (user:<id> or api-key:<prefix>); empty if guessed.")


class SpeakerRolesSerializer(serializers.Serializer):
    roles = serializers.DictField(
        child=StrictChoiceField(choices=SpeakerRole.choices),
        help_text="Every label's role (replaces the mapping); {} goes back to the first guess.",
    )


class SearchFilterSerializer(SessionFilterSerializer):
    q = serializers.CharField(
        max_length=200,
        trim_whitespace=True,
        help_text='Words or "quoted phrases", Japanese or English; every term must occur in the segment.',
    )
    language = serializers.ChoiceField(choices=Language.choices, required=False)


class SearchHitSerializer(serializers.Serializer):
    session_id = serializers.UUIDField()
    segment_id = serializers.CharField()
    start_ms = serializers.IntegerField(help_text="Where the segment starts in the recording.")
    end_ms = serializers.IntegerField()
    speaker = serializers.CharField()
    snippet = serializers.CharField(help_text="At most 160 characters of the segment around the first match.")
    rank = serializers.FloatField(help_text="The share of the segment the matched terms make up (0-1); higher first.")
    language = serializers.CharField()
    external_ref = serializers.CharField()
    session_created_at = serializers.DateTimeField()
