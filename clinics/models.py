"""Tenants and who may act for them.

A clinic is the tenant; every clinic-owned row elsewhere carries a non-null
``clinic`` foreign key and is reached only through ``clinics.access``.
"""

import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Language(models.TextChoices):
    JA_JP = "ja-JP", "Japanese"
    EN_US = "en-US", "English (US)"


class Role(models.TextChoices):
    ADMIN = "admin", "Clinic admin"
    CLINICIAN = "clinician", "Clinician"


class McpKeyRoles(models.TextChoices):
    """Which API keys may use the MCP server (agents/), once it is on."""

    ADMIN = "admin", "Admin keys only"
    ADMIN_CLINICIAN = "admin_clinician", "Admin and clinician keys"


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone name (e.g. Asia/Tokyo).")


# A final's confidence is the mean of its words' (AWS Transcribe's item
# confidences; the offline engine's word posteriors). Below 0.6 the mean
# means several words were guesses — the lines worth a clinician's look —
# while clear speech sits at 0.85-1.0 on both engines, so the default flags
# few lines of a good recording instead of training clinicians to ignore
# the flag. A clinic tunes it to its room and engine.
DEFAULT_LOW_CONFIDENCE_THRESHOLD = 0.6


class Clinic(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    default_language = models.CharField(max_length=8, choices=Language.choices, default=Language.JA_JP)
    time_zone = models.CharField(
        max_length=64,
        default="Asia/Tokyo",
        validators=[validate_time_zone],
        help_text="Times in the console and downloads are shown in this zone (IANA name).",
    )
    is_active = models.BooleanField(default=True)
    kms_key_id = models.CharField(
        max_length=256, blank=True, help_text="KMS key id or ARN used for this clinic's objects (SSE-KMS)."
    )
    retention_days = models.PositiveIntegerField(default=365 * 5)
    transcription_engine = models.CharField(
        max_length=16, blank=True, help_text="Overrides TRANSCRIPTION_ENGINE for this clinic (local, fake, aws)."
    )
    custom_vocabulary_name = models.CharField(max_length=200, blank=True)
    priority = models.PositiveSmallIntegerField(
        default=0, help_text="Higher goes first when engine streams are queued."
    )
    producer_grace_minutes = models.PositiveSmallIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(720)],
        help_text="A recording whose browser or client disconnects and does not resume within this many minutes "
        "is ended and its audio sealed by the server, freeing its slot (1-720).",
    )
    consent_required = models.BooleanField(
        default=True,
        help_text="Record the patient's consent on a session before any of its audio is accepted.",
    )
    mcp_enabled = models.BooleanField(
        default=False,
        help_text="Let AI assistants read this clinic's consultations through the MCP server (/mcp, read-only, "
        "audited).",
    )
    mcp_key_roles = models.CharField(
        max_length=16,
        choices=McpKeyRoles.choices,
        default=McpKeyRoles.ADMIN,
        help_text="Which API keys may use the MCP server when it is on.",
    )
    low_confidence_threshold = models.FloatField(
        default=DEFAULT_LOW_CONFIDENCE_THRESHOLD,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Finals whose engine confidence is below this (0-1) are flagged for the clinician to check "
        "first; 0 flags none.",
    )
    notes_bedrock_enabled = models.BooleanField(
        default=False,
        help_text="Let Amazon Bedrock write this clinic's note drafts (the transcript text is sent to AWS); off: "
        "the offline extractive engine sorts the transcript's own sentences.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.CLINICIAN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["clinic", "user"], name="membership_unique_clinic_user")]
        indexes = [models.Index(fields=["clinic", "role"])]

    def __str__(self) -> str:
        return f"{self.user} @ {self.clinic} ({self.role})"


class ClinicQuota(models.Model):
    clinic = models.OneToOneField(Clinic, on_delete=models.CASCADE, primary_key=True, related_name="quota")
    max_concurrent_sessions = models.PositiveIntegerField(default=20)
    max_session_seconds = models.PositiveIntegerField(default=2 * 60 * 60)
    audio_minutes_per_month = models.PositiveIntegerField(default=60 * 200)
    storage_bytes = models.PositiveBigIntegerField(default=50 * 1024**3)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Quota of {self.clinic}"


class ApiKey(models.Model):
    """An integrator's key. Only a SHA-256 of the secret is stored: the keys
    are 256-bit random, so a slow password hash buys nothing and would put a
    KDF on every API call."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.CLINICIAN)
    prefix = models.CharField(max_length=16, unique=True)
    hashed_key = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["clinic", "created_at"])]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AuditEvent(models.Model):
    """Append-only record of who read or changed what. Never holds transcript
    text, audio or patient references: ids and counts only."""

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="audit_events")
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    details = models.JSONField(default=dict, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["clinic", "created_at"]),
            models.Index(fields=["clinic", "object_type", "object_id"]),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"

    def save(self, *args: object, **kwargs: object) -> None:
        # Append-only is an invariant of the table, not business logic.
        if not self._state.adding:
            raise ValueError("audit events are append-only")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValueError("audit events are append-only")


class UsedStreamToken(models.Model):
    """Remembers consumed stream tokens so each works once. Rows older than
    the token lifetime can be purged: an expired token fails anyway."""

    jti = models.CharField(max_length=32, primary_key=True)
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    used_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"stream token {self.jti[:6]}…"
