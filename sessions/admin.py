"""Django admin for consultation sessions and transcripts, scoped like the
rest of the admin (``clinics.admin_scoping``). Opening a page that shows
transcript text writes a ``transcript.read`` audit row; editing a segment
goes through ``segment_correct`` (a new revision with its history,
``transcript.correct``; a speaker change writes ``transcript.write``). Erasure goes through ``session_erase`` so the
audio in storage goes with the rows."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html

from clinics import access
from clinics.access import Principal
from clinics.admin_scoping import TenantScopedAdminMixin, actor_for, administered_clinic_ids, is_platform_staff
from clinics.audit import AuditAction, audit_record
from clinics.models import Role
from sessions import formats, services, storage_keys
from sessions.models import OPEN_STATUSES, ConsultationSession, TranscriptSegment
from sessions.storage import storage_iter_range, storage_size
from voiceai.errors import DomainError


def _session_principal(request: HttpRequest, session: ConsultationSession) -> Principal:
    """Session services take a Principal of the session's clinic; platform
    staff act through one that names them."""
    actor = actor_for(request, session.clinic)
    if isinstance(actor, Principal):
        return actor
    return Principal(
        clinic=session.clinic,
        role=Role.ADMIN,
        user=request.user,
        client_ip=actor.client_ip,
        request_id=actor.request_id,
        extra={"platform_staff": True},
    )


def _audit_transcript_read(request: HttpRequest, session: ConsultationSession, *, via: str) -> None:
    audit_record(
        clinic=session.clinic,
        action=AuditAction.TRANSCRIPT_READ,
        object_type="session",
        object_id=session.pk,
        actor=actor_for(request, session.clinic),
        details={"via": via},
    )


class TranscriptSegmentInline(TenantScopedAdminMixin, admin.TabularInline):
    model = TranscriptSegment
    clinic_admin_permissions = frozenset({"view"})
    staff_permissions = frozenset({"view"})
    fields = ("start_ms", "end_ms", "speaker", "text", "confidence", "is_final", "revision", "reviewed_at")
    readonly_fields = fields
    ordering = ("start_ms", "id")
    extra = 0
    can_delete = False
    show_change_link = True

    def scope_queryset(self, principal: Principal) -> QuerySet:
        return access.transcript_segments_visible_to(principal)


@admin.register(ConsultationSession)
class ConsultationSessionAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Sessions are created and driven by the API and the stream; here they
    are read (with their transcript), ended, or erased."""

    clinic_admin_permissions = frozenset({"view", "delete"})
    staff_permissions = frozenset({"view", "delete"})
    list_display = ("short_id", "clinic", "status", "language", "external_ref", "started", "length")
    search_fields = ("=id", "=external_ref")
    date_hierarchy = "created_at"
    inlines = (TranscriptSegmentInline,)
    actions = ("end_sessions",)
    fields = (
        "id", "clinic", "status", "failure_reason", "language", "engine", "sample_rate", "source", "progress",
        "external_ref", "created_by", "created_by_api_key", "created_at", "started_at", "ended_at",
        "audio_player", "audio_duration_ms", "audio_bytes", "storage_key", "audio_sha256",
        "consent_method", "consent_recorded_at", "consent_recorded_by", "consent_note",
        "speaker_roles", "speaker_roles_set_by",
    )  # fmt: skip
    readonly_fields = fields

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        # At 1280 px beside the admin's sidebar every column must fit: a
        # clinic admin of one clinic needs no clinic column, nobody the
        # full UUID (the change page has it).
        if is_platform_staff(request.user) or len(administered_clinic_ids(request)) > 1:
            return self.list_display
        return tuple(name for name in self.list_display if name != "clinic")

    @admin.display(description="ID", ordering="id")
    def short_id(self, obj: ConsultationSession) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="Started", ordering="created_at")
    def started(self, obj: ConsultationSession) -> str:
        # Compact and in the reader's zone (the header names it).
        return date_format(timezone.localtime(obj.created_at), "Y-m-d H:i")

    @admin.display(description="Length", ordering="audio_duration_ms")
    def length(self, obj: ConsultationSession) -> str:
        seconds = (obj.audio_duration_ms or 0) // 1000
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    @admin.display(description="Audio")
    def audio_player(self, obj: ConsultationSession) -> str:
        if not obj.storage_key:
            return "No sealed audio yet (the consultation is still open)." if obj.status in OPEN_STATUSES else "—"
        url = reverse("admin:consultations_consultationsession_audio", args=[obj.pk])
        return format_html('<audio controls preload="none" src="{}" style="width: min(100%, 32rem)"></audio>', url)

    def get_urls(self) -> list:
        audio = path(
            "<uuid:object_id>/audio/",
            self.admin_site.admin_view(self.audio_view),
            name="consultations_consultationsession_audio",
        )
        return [audio, *super().get_urls()]

    def audio_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The sealed WAV for the player, scoped like the change page (another
        clinic's id answers 404) and audited as an audio read."""
        session = self.get_object(request, str(object_id))
        if session is None or not self.has_view_permission(request, session):
            raise Http404
        key = storage_keys.audio_wav_key(session)
        size = storage_size(key)
        if size is None:
            raise Http404
        services.audio_read_audit(
            principal=_session_principal(request, session), session=session, start=0, end=size - 1, size=size
        )
        response = StreamingHttpResponse(storage_iter_range(key, start=0, length=size), content_type="audio/wav")
        response["Content-Length"] = str(size)
        response["Cache-Control"] = "private, no-store"
        return response

    def scope_queryset(self, principal: Principal) -> QuerySet:
        return access.sessions_visible_to(principal)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("clinic")

    def get_list_filter(self, request: HttpRequest) -> tuple:
        filters: tuple = ("status", "language", "engine", "consent_method")
        if is_platform_staff(request.user) or len(administered_clinic_ids(request)) > 1:
            filters += (("clinic", admin.RelatedOnlyFieldListFilter),)
        return filters

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        # Audit only when the page with the transcript was actually rendered
        # (not for another clinic's id, which redirects like a missing one).
        if request.method == "GET" and response.status_code == 200:
            session = self.get_object(request, object_id)
            if session is not None:
                _audit_transcript_read(request, session, via="admin.session")
        return response

    def has_end_permission(self, request: HttpRequest) -> bool:
        # Ending is what a clinic admin may do to a session besides erasing it.
        return self._allowed(request, "view")

    @admin.action(description="End selected sessions", permissions=["end"])
    def end_sessions(self, request: HttpRequest, queryset: QuerySet[ConsultationSession]) -> None:
        ended = 0
        for session in queryset.filter(status__in=OPEN_STATUSES):
            services.session_end(principal=_session_principal(request, session), session=session)
            ended += 1
        self.message_user(request, f"Ended {ended} session(s).")

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        # Erasure removes the segments itself; deleting a session must not
        # need a separate "delete segment" permission, which nobody has.
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def delete_model(self, request: HttpRequest, obj: ConsultationSession) -> None:
        try:
            services.session_erase(principal=_session_principal(request, obj), session=obj)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ConsultationSession]) -> None:
        for session in queryset:
            self.delete_model(request, session)


class TranscriptSegmentForm(forms.ModelForm):
    class Meta:
        model = TranscriptSegment
        fields = ("text", "speaker")


@admin.register(TranscriptSegment)
class TranscriptSegmentAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Corrections of single segments. The list leaves the text out so that
    browsing it is not a transcript read; opening a segment is."""

    form = TranscriptSegmentForm
    clinic_admin_permissions = frozenset({"view", "change"})
    staff_permissions = frozenset({"view", "change"})
    list_display = (
        "session", "segment_id", "start_ms", "end_ms", "speaker", "is_final", "revision", "needs_review",
    )  # fmt: skip
    list_filter = ("is_final",)
    search_fields = ("=session__id", "=segment_id")
    fields = (
        "session", "clinic", "segment_id", "revision", "start_ms", "end_ms", "text", "speaker", "confidence",
        "needs_review", "reviewed_by", "reviewed_at", "is_final", "created_at",
    )  # fmt: skip
    readonly_fields = ("session", "clinic", "segment_id", "revision", "start_ms", "end_ms", "confidence",
                       "needs_review", "reviewed_by", "reviewed_at", "is_final", "created_at")  # fmt: skip

    @admin.display(description="Needs review", boolean=True)
    def needs_review(self, obj: TranscriptSegment) -> bool:
        # The clinic's threshold; saving a corrected text clears it (segment_correct).
        return obj.is_final and formats.needs_review(obj, obj.clinic.low_confidence_threshold)

    def scope_queryset(self, principal: Principal) -> QuerySet:
        return access.transcript_segments_visible_to(principal)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("clinic", "session")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            segment = self.get_object(request, object_id)
            if segment is not None:
                _audit_transcript_read(request, segment.session, via="admin.segment")
        return response

    def save_model(self, request: HttpRequest, obj: TranscriptSegment, form: forms.ModelForm, change: bool) -> None:
        # The admin's change view runs in a transaction: the rows and their
        # audit rows commit together. Audit details never carry the text.
        if "text" in form.changed_data:
            # The same correction as the console's and the API's: a new
            # revision, the engine's text kept in the history.
            services.segment_correct(
                principal=_session_principal(request, obj.session),
                session=obj.session,
                segment_id=obj.segment_id,
                text=obj.text,
                revision=obj.revision,
            )
        if "speaker" in form.changed_data:
            obj.save(update_fields=["speaker"])  # the text (if changed) was saved by the correction
            audit_record(
                clinic=obj.clinic,
                action=AuditAction.TRANSCRIPT_WRITE,
                object_type="transcript_segment",
                object_id=obj.pk,
                actor=actor_for(request, obj.clinic),
                details={"session_id": str(obj.session_id), "fields": ["speaker"], "via": "admin"},
            )
