"""Shapes of the notes API (``notes.formats.note_document`` builds the
answers; these type-check bodies and document both for OpenAPI)."""

from rest_framework import serializers

from clinics.api.fields import StrictChoiceField, StrictIntegerField
from notes.models import NoteEngineName, NoteSection, NoteStatus


class EvidenceSerializer(serializers.Serializer):
    segment_id = serializers.CharField(help_text="A final of the session's transcript.")
    start_ms = serializers.IntegerField(help_text="Where that final starts in the recording.")
    end_ms = serializers.IntegerField()


class SentenceSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Stable within the note version; send it back to keep the evidence.")
    text = serializers.CharField()
    edited = serializers.BooleanField(help_text="A clinician changed or added this sentence.")
    evidence = EvidenceSerializer(many=True, help_text="The finals the sentence is drawn from (none: added by hand).")
    start_ms = serializers.IntegerField(allow_null=True, help_text="The evidence's span to play: first start.")
    end_ms = serializers.IntegerField(allow_null=True, help_text="... to last end.")


class SectionSerializer(serializers.Serializer):
    key = serializers.ChoiceField(choices=NoteSection.choices)
    label = serializers.CharField(
        help_text="In the consultation's language (主訴・現病歴 / 所見 / 評価 / 計画 for ja-JP)."
    )
    sentences = SentenceSerializer(many=True)


class NoteErrorSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="note_engine_throttled, note_engine_timeout, note_engine_unavailable, note_output_invalid, "
        "note_engine_denied, note_job_interrupted, note_job_lost, internal_error."
    )
    retryable = serializers.BooleanField(help_text="Whether the same request could succeed later.")
    message = serializers.CharField()


class VersionSummarySerializer(serializers.Serializer):
    version = serializers.IntegerField()
    status = serializers.ChoiceField(choices=NoteStatus.choices)
    engine = serializers.ChoiceField(choices=NoteEngineName.choices)
    signed_by = serializers.CharField()
    signed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class NoteSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    session_id = serializers.UUIDField()
    version = serializers.IntegerField(help_text="1, 2, ...: a new version follows a signed one when it is edited.")
    revision = serializers.IntegerField(help_text="Edits of this version; send version and revision back to edit/sign.")
    status = serializers.ChoiceField(choices=NoteStatus.choices)
    progress = serializers.IntegerField(help_text="Generation progress, percent.")
    language = serializers.CharField()
    engine = serializers.ChoiceField(choices=NoteEngineName.choices)
    model_id = serializers.CharField(help_text="The model that wrote the draft (bedrock); empty for extractive.")
    prompt_version = serializers.CharField()
    notice = serializers.CharField(help_text="What the page must say about where the draft's words come from.")
    error = NoteErrorSerializer(allow_null=True, help_text="The last failure (also while a retry is queued).")
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    sections = SectionSerializer(many=True, help_text="Subjective, Objective, Assessment, Plan, in that order.")
    supersedes_version = serializers.IntegerField(allow_null=True)
    requested_by = serializers.CharField()
    edited_by = serializers.CharField()
    edited_at = serializers.DateTimeField(allow_null=True)
    signed_by = serializers.CharField()
    signed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    latest_signed_version = serializers.IntegerField(allow_null=True)
    versions = VersionSummarySerializer(many=True)


class SentenceEditSerializer(serializers.Serializer):
    id = serializers.CharField(
        required=False, help_text="An existing sentence's id (keeps its evidence); omit for new."
    )
    text = serializers.CharField()


class SectionsEditSerializer(serializers.Serializer):
    subjective = SentenceEditSerializer(many=True, required=False)
    objective = SentenceEditSerializer(many=True, required=False)
    assessment = SentenceEditSerializer(many=True, required=False)
    plan = SentenceEditSerializer(many=True, required=False)


class NoteEditSerializer(serializers.Serializer):
    version = StrictIntegerField(min_value=1, help_text="The version you read.")
    revision = StrictIntegerField(min_value=0, help_text="The revision you read.")
    # Checked in notes.services (sentence ids, lengths): typed loosely here
    # so the service's error details name the sentence at fault.
    sections = serializers.JSONField(help_text="Every sentence of the new version, by section (see the example).")


class NoteSignSerializer(serializers.Serializer):
    version = StrictIntegerField(min_value=1)
    revision = StrictIntegerField(min_value=0)


class NoteGenerateSerializer(serializers.Serializer):
    engine = StrictChoiceField(
        choices=NoteEngineName.choices,
        required=False,
        help_text="Omit for the platform default (extractive unless NOTES_ENGINE=bedrock and the clinic opted in). "
        "bedrock needs the clinic's notes_bedrock_enabled (403 bedrock_not_enabled otherwise).",
    )
