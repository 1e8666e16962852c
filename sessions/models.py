import uuid

from django.conf import settings
from django.db import models

from clinics.models import ApiKey, Clinic, Language


class SessionStatus(models.TextChoices):
    CREATED = "created", "Created"
    LIVE = "live", "Live"
    ENDED = "ended", "Ended"
    FAILED = "failed", "Failed"


# A session a producer may attach to, and the two ways a session is over.
OPEN_STATUSES = frozenset({SessionStatus.CREATED, SessionStatus.LIVE})
CLOSED_STATUSES = frozenset({SessionStatus.ENDED, SessionStatus.FAILED})


class ConsentMethod(models.TextChoices):
    VERBAL = "verbal", "Verbal"
    WRITTEN = "written", "Written"


class SpeakerRole(models.TextChoices):
    """Who a speaker label (the engine's ``spk_0``...) is in the consultation."""

    CLINICIAN = "clinician", "Clinician"
    PATIENT = "patient", "Patient"
    FAMILY = "family", "Family"
    OTHER = "other", "Other"


class ConsultationSession(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="sessions")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by_api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    external_ref = models.CharField(
        max_length=128, blank=True, help_text="Opaque id from the integrator. Never a patient name."
    )
    language = models.CharField(max_length=8, choices=Language.choices)
    engine = models.CharField(max_length=16)
    sample_rate = models.PositiveIntegerField(default=16000)
    status = models.CharField(max_length=16, choices=SessionStatus.choices, default=SessionStatus.CREATED)
    failure_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    audio_duration_ms = models.PositiveBigIntegerField(default=0)
    audio_bytes = models.PositiveBigIntegerField(default=0)
    storage_key = models.CharField(max_length=300, blank=True)
    audio_sha256 = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=16, default="stream")  # stream | batch
    progress = models.PositiveSmallIntegerField(default=0, help_text="Batch progress, percent.")
    # The patient's consent to the recording, on the session row itself: the
    # producer's connect reads this row anyway, so the gate costs no query.
    consent_method = models.CharField(max_length=16, choices=ConsentMethod.choices, blank=True)
    consent_recorded_at = models.DateTimeField(null=True, blank=True)
    consent_recorded_by = models.CharField(max_length=200, blank=True, help_text="Who recorded it (audit label).")
    consent_note = models.CharField(max_length=500, blank=True)
    # The engine's speaker labels mapped to roles ({"spk_0": "clinician"}), as a
    # person set them; empty means nobody has yet and readers use the first
    # guess (``sessions.formats.speaker_roles``). A handful of labels per
    # consultation, read with the session: a JSON field, not a table.
    speaker_roles = models.JSONField(default=dict, blank=True)
    speaker_roles_set_by = models.CharField(max_length=200, blank=True, help_text="Who set the roles (audit label).")

    class Meta:
        indexes = [
            models.Index(fields=["clinic", "-created_at"]),
            models.Index(fields=["clinic", "status"]),
            models.Index(fields=["clinic", "external_ref"]),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Session {self.id}"

    @property
    def has_consent(self) -> bool:
        return self.consent_recorded_at is not None


class TranscriptSegment(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    session = models.ForeignKey(ConsultationSession, on_delete=models.CASCADE, related_name="segments")
    segment_id = models.CharField(max_length=100)
    revision = models.PositiveIntegerField(default=0)
    start_ms = models.PositiveBigIntegerField()
    end_ms = models.PositiveBigIntegerField()
    text = models.TextField()
    speaker = models.CharField(max_length=32, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    is_final = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # A clinician checked this final (confirmed it, or corrected it): it no
    # longer needs review whatever its engine confidence.
    reviewed_by = models.CharField(max_length=200, blank=True, help_text="user:<id> or api-key:<prefix>.")
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "segment_id"], name="segment_unique_per_session"),
        ]
        indexes = [models.Index(fields=["clinic", "session", "start_ms"])]
        ordering = ["start_ms", "id"]

    def __str__(self) -> str:
        return f"Segment {self.segment_id} of {self.session_id}"


class SegmentRevision(models.Model):
    """One clinician correction of a final segment: the text before and
    after it, who made it and when. The segment row itself always carries
    the latest text and its ``revision``, so every reader of segments (the
    transcript, downloads, exports, ``transcript.json``, search, the live
    view) reads the latest revision; these rows are the history, and the
    first one's ``text_before`` is the engine's original text."""

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    session = models.ForeignKey(ConsultationSession, on_delete=models.CASCADE, related_name="+")
    segment = models.ForeignKey(TranscriptSegment, on_delete=models.CASCADE, related_name="revisions")
    revision = models.PositiveIntegerField(help_text="The segment's revision this correction made.")
    text_before = models.TextField()
    text_after = models.TextField()
    edited_by = models.CharField(max_length=200, help_text="user:<id> or api-key:<prefix>.")
    edited_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["segment", "revision"], name="segment_revision_unique")]
        indexes = [models.Index(fields=["clinic", "session", "segment"])]
        ordering = ["segment_id", "revision"]

    def __str__(self) -> str:
        return f"Revision {self.revision} of segment {self.segment_id}"
