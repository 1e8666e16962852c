"""Clinical notes: a SOAP draft made from a consultation's transcript, the
clinician's edits and signature, and the background job that writes it.

One row per version of a session's note. The job's state lives on the row
(``status``, ``attempts``, ``run_after``, ``lease_expires_at``), so any
process can claim, resume or retry it after a restart: no in-memory queue.
"""

import uuid

from django.db import models

from clinics.models import Clinic, Language
from sessions.models import ConsultationSession


class NoteStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    GENERATING = "generating", "Generating"
    DRAFT = "draft", "Draft"
    FAILED = "failed", "Failed"
    SIGNED = "signed", "Signed"
    SUPERSEDED = "superseded", "Superseded"


# A job is waiting for or holding a worker.
JOB_STATUSES = frozenset({NoteStatus.QUEUED, NoteStatus.GENERATING})


class NoteEngineName(models.TextChoices):
    EXTRACTIVE = "extractive", "Extractive (offline, rules)"
    BEDROCK = "bedrock", "Amazon Bedrock"


class NoteSection(models.TextChoices):
    """The four SOAP sections, in the order a note shows them."""

    SUBJECTIVE = "subjective", "Subjective"
    OBJECTIVE = "objective", "Objective"
    ASSESSMENT = "assessment", "Assessment"
    PLAN = "plan", "Plan"


SECTION_KEYS: tuple[str, ...] = tuple(NoteSection.values)


class ClinicalNote(models.Model):
    """One version of a session's note.

    ``sections`` holds ``{"subjective": [{"id": "n1", "text": "...",
    "evidence": ["<segment_id>", ...], "edited": false}, ...], ...}``: a
    handful of sentences read and written together with the note, and an
    edit replaces them all — a JSON field, not a table. Evidence names the
    session's transcript segments (``TranscriptSegment.segment_id``); their
    times are read from the segments when the note is shown.

    ``revision`` counts edits of this version (the precondition of the next
    edit or the signature); a signed version never changes again — editing
    it makes version + 1, which supersedes it once that one is signed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    session = models.ForeignKey(ConsultationSession, on_delete=models.CASCADE, related_name="notes")
    version = models.PositiveIntegerField()
    revision = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=NoteStatus.choices, default=NoteStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Generation progress, percent.")
    language = models.CharField(max_length=8, choices=Language.choices)
    engine = models.CharField(max_length=16, choices=NoteEngineName.choices)
    model_id = models.CharField(max_length=200, blank=True, help_text="The model that wrote the draft (bedrock).")
    prompt_version = models.CharField(max_length=32, blank=True, help_text="Prompt or rule set of the draft.")
    sections = models.JSONField(default=dict, blank=True)
    # Which transcript the draft was made from: (segment_id, revision) of
    # every final, hashed. A draft nobody edited is made again when the
    # transcript it came from has changed by the time the session is sealed.
    source_fingerprint = models.CharField(max_length=64, blank=True)
    supersedes = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="superseded_by"
    )
    # The job.
    attempts = models.PositiveSmallIntegerField(default=0)
    run_after = models.DateTimeField(null=True, blank=True, help_text="A queued job runs from this time on.")
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A generating job not finished by then is taken up again."
    )
    error_code = models.CharField(max_length=64, blank=True, help_text="The last failure's code (never model text).")
    error_retryable = models.BooleanField(default=False)
    # People.
    requested_by = models.CharField(max_length=200, blank=True, help_text="Audit label; system for automatic drafts.")
    edited_by = models.CharField(max_length=200, blank=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    signed_by = models.CharField(max_length=200, blank=True)
    signed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "version"], name="note_version_unique_per_session")]
        indexes = [
            models.Index(fields=["clinic", "session", "-version"]),
            models.Index(fields=["clinic", "status"]),
            # The job queue: due queued jobs and expired leases, across clinics.
            models.Index(fields=["status", "run_after"], name="note_job_queue"),
        ]
        ordering = ["session_id", "-version"]

    def __str__(self) -> str:
        return f"Note v{self.version} of {self.session_id}"


class NoteEngineCall(models.Model):
    """One call of a note engine: what it cost (characters in and out) and
    how it ended, per clinic and engine, for platform staff's usage view
    and billing. No text, no session: it outlives a session's erasure."""

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    note = models.ForeignKey(ClinicalNote, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    engine = models.CharField(max_length=16, choices=NoteEngineName.choices)
    model_id = models.CharField(max_length=200, blank=True)
    input_chars = models.PositiveIntegerField(default=0)
    output_chars = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=64, help_text="ok, or the error code.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["clinic", "engine", "created_at"])]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.engine} call ({self.outcome})"
