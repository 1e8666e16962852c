"""Shapes of the clinic, member, API-key and tenant-management API."""

from rest_framework import serializers

from clinics.api.fields import (
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictFloatField,
    StrictIntegerField,
)
from clinics.models import ApiKey, Clinic, Language, McpKeyRoles, Membership, Role


class NumberField(serializers.FloatField):
    """A number as it is: integers stay integers in the JSON."""

    def to_representation(self, value: float | int) -> float | int:
        return value


class LimitSerializer(serializers.Serializer):
    limit = serializers.IntegerField()
    used = NumberField(allow_null=True, help_text="Current use; null where the limit applies per session.")
    period_start = serializers.DateTimeField(required=False, help_text="Start of the counting period.")


class QuotaUsageSerializer(serializers.Serializer):
    max_concurrent_sessions = LimitSerializer()
    max_session_seconds = LimitSerializer()
    audio_minutes_per_month = LimitSerializer()
    storage_bytes = LimitSerializer()


LOW_CONFIDENCE_HELP = (
    "Finals whose engine confidence (0-1) is below this are flagged needs_review for the clinician to check "
    "first; 0 flags none. Default 0.6."
)

NOTES_BEDROCK_HELP = (
    "Opt in to Amazon Bedrock writing the clinic's SOAP note drafts (the transcript text is sent to AWS Bedrock "
    "in the platform's region; no clinic or patient identifier). Off: the offline extractive engine."
)

CLINIC_FIELDS = (
    "id", "name", "slug", "default_language", "time_zone", "is_active", "retention_days", "producer_grace_minutes",
    "consent_required", "mcp_enabled", "mcp_key_roles", "low_confidence_threshold", "notes_bedrock_enabled",
    "created_at",
)  # fmt: skip


class ClinicSerializer(serializers.Serializer):
    """The caller's clinic, with its quota and usage (read-only here).
    Serializes a dict: the clinic's fields plus ``role`` and ``quota``."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    slug = serializers.CharField()
    default_language = serializers.CharField()
    time_zone = serializers.CharField(help_text="IANA zone the console shows times in.")
    is_active = serializers.BooleanField()
    retention_days = serializers.IntegerField()
    producer_grace_minutes = serializers.IntegerField(
        help_text="Minutes a disconnected recording may take to resume before the server ends and seals it."
    )
    consent_required = serializers.BooleanField(
        help_text="Whether a session needs the patient's consent recorded before its audio is accepted."
    )
    mcp_enabled = serializers.BooleanField(
        help_text="Whether AI assistants may read the clinic's consultations through the MCP server (/mcp)."
    )
    mcp_key_roles = serializers.CharField(help_text="Which API keys may use the MCP server: admin or admin_clinician.")
    low_confidence_threshold = serializers.FloatField(help_text=LOW_CONFIDENCE_HELP)
    notes_bedrock_enabled = serializers.BooleanField(help_text=NOTES_BEDROCK_HELP)
    created_at = serializers.DateTimeField()
    role = serializers.CharField(help_text="Your role in this clinic.")
    quota = QuotaUsageSerializer()
    engine = serializers.CharField(help_text="The clinic's speech engine (local, aws, fake).")
    engine_languages = serializers.ListField(
        child=serializers.CharField(),
        help_text="Spoken languages the clinic's engine transcribes; sessions in others are refused "
        "(400 language_not_supported). The offline engine (local) does en-US only.",
    )


class ClinicPatchSerializer(serializers.Serializer):
    """Clinic admins may rename the clinic and change its default language,
    time zone, the grace a disconnected recording gets and whether sessions
    need the patient's consent; everything else shown by GET is read-only
    for them."""

    name = StrictCharField(required=False, max_length=200, min_length=1)
    default_language = StrictChoiceField(choices=Language.choices, required=False)
    time_zone = StrictCharField(required=False, max_length=64, min_length=1)
    producer_grace_minutes = serializers.IntegerField(required=False, min_value=1, max_value=720)
    consent_required = StrictBooleanField(
        required=False, help_text="Require the patient's consent on each session before its audio is accepted."
    )
    mcp_enabled = StrictBooleanField(
        required=False, help_text="Let AI assistants read the clinic's consultations through the MCP server (/mcp)."
    )
    mcp_key_roles = StrictChoiceField(
        choices=McpKeyRoles.choices,
        required=False,
        help_text="Which API keys may use the MCP server: admin (default) or admin_clinician.",
    )
    low_confidence_threshold = StrictFloatField(
        required=False, min_value=0.0, max_value=1.0, help_text=LOW_CONFIDENCE_HELP
    )
    notes_bedrock_enabled = StrictBooleanField(required=False, help_text=NOTES_BEDROCK_HELP)
    id = serializers.UUIDField(read_only=True)
    slug = serializers.CharField(read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    retention_days = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    role = serializers.CharField(read_only=True)
    quota = QuotaUsageSerializer(read_only=True)
    engine = serializers.CharField(read_only=True)
    engine_languages = serializers.ListField(child=serializers.CharField(), read_only=True)


class MemberSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(source="user.get_username", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user_id", "username", "email", "role", "created_at"]
        read_only_fields = fields


class MemberCreateSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150, help_text="An existing platform user.")
    email = StrictCharField(
        max_length=254,
        required=False,
        allow_blank=True,
        help_text="The user's email address; required from clinic admins (platform staff may leave it out).",
    )
    role = StrictChoiceField(choices=Role.choices)


class MemberUpdateSerializer(serializers.Serializer):
    role = StrictChoiceField(choices=Role.choices)
    id = serializers.IntegerField(read_only=True)
    user_id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class ApiKeySerializer(serializers.ModelSerializer):
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = ["id", "name", "role", "prefix", "created_at", "last_used_at", "revoked_at", "is_active"]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100, min_length=1)
    role = StrictChoiceField(choices=Role.choices)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The raw key. Shown only in this response.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


# --- platform staff -------------------------------------------------------------


class StaffClinicSerializer(serializers.ModelSerializer):
    class Meta:
        model = Clinic
        fields = [
            "id",
            "name",
            "slug",
            "default_language",
            "is_active",
            "retention_days",
            "kms_key_id",
            "transcription_engine",
            "custom_vocabulary_name",
            "priority",
            "created_at",
        ]
        read_only_fields = fields


class StaffClinicCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200, min_length=1)
    slug = serializers.SlugField(max_length=64)
    default_language = StrictChoiceField(choices=Language.choices, required=False)


class StaffClinicPatchSerializer(serializers.Serializer):
    name = StrictCharField(required=False, max_length=200, min_length=1)
    default_language = StrictChoiceField(choices=Language.choices, required=False)
    retention_days = StrictIntegerField(required=False, min_value=1, max_value=36500)
    kms_key_id = StrictCharField(required=False, allow_blank=True, max_length=256)
    transcription_engine = StrictChoiceField(choices=["", "local", "fake", "aws"], required=False, allow_blank=True)
    custom_vocabulary_name = StrictCharField(required=False, allow_blank=True, max_length=200)
    priority = StrictIntegerField(required=False, min_value=0, max_value=32767)
    id = serializers.UUIDField(read_only=True)
    slug = serializers.CharField(read_only=True, help_text="Fixed once created.")
    is_active = serializers.BooleanField(read_only=True, help_text="Use suspend/ and reactivate/.")
    created_at = serializers.DateTimeField(read_only=True)


class QuotaPatchSerializer(serializers.Serializer):
    max_concurrent_sessions = StrictIntegerField(required=False, min_value=0, max_value=100_000)
    max_session_seconds = StrictIntegerField(required=False, min_value=0, max_value=14_400 * 10)
    audio_minutes_per_month = StrictIntegerField(required=False, min_value=0, max_value=2**31 - 1)
    storage_bytes = StrictIntegerField(required=False, min_value=0, max_value=2**62)
