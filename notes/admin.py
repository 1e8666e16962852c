"""Django admin for notes. Clinic admins see their clinic's notes: status,
progress, versions, who signed and when, the last error — never the
note's text (that is read, audited, in the console or the API). Platform
staff see every clinic's notes the same way, and the note engines' usage
per clinic and engine (calls, characters, failures). Read-only: notes
change through ``notes.services`` only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from clinics.access import Principal, note_engine_calls_visible_to, notes_visible_to
from clinics.admin_scoping import TenantScopedAdminMixin, administered_clinic_ids, is_platform_staff
from notes.models import ClinicalNote, NoteEngineCall
from notes.selectors import note_engine_usage

_NOTE_FIELDS = (
    "clinic", "session", "version", "revision", "status", "progress", "language", "engine", "model_id",
    "prompt_version", "attempts", "error_code", "error_retryable", "run_after", "lease_expires_at", "supersedes",
    "requested_by", "edited_by", "edited_at", "signed_by", "signed_at", "created_at", "updated_at",
)  # fmt: skip


@admin.register(ClinicalNote)
class ClinicalNoteAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    clinic_admin_permissions = frozenset({"view"})
    staff_permissions = frozenset({"view"})
    list_display = (
        "session", "version", "status", "progress", "engine", "attempts", "error_code", "signed_by", "signed_at",
        "updated_at",
    )  # fmt: skip
    list_select_related = ("session",)
    fields = _NOTE_FIELDS
    readonly_fields = _NOTE_FIELDS
    date_hierarchy = "created_at"

    def scope_queryset(self, principal: Principal) -> QuerySet:
        return notes_visible_to(principal)

    def get_list_filter(self, request: HttpRequest) -> tuple:
        filters: tuple = ("status", "engine")
        if is_platform_staff(request.user) or len(administered_clinic_ids(request)) > 1:
            filters += (("clinic", admin.RelatedOnlyFieldListFilter),)
        return filters

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Never the sections (the note's text) on an admin page.
        return super().get_queryset(request).defer("sections")


@admin.register(NoteEngineCall)
class NoteEngineCallAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Platform staff only: every call of a note engine, and above the list
    the usage per clinic and engine."""

    clinic_admin_permissions = frozenset()
    staff_permissions = frozenset({"view"})
    list_display = ("created_at", "clinic", "engine", "model_id", "input_chars", "output_chars", "outcome")
    list_filter = ("engine", "outcome", ("clinic", admin.RelatedOnlyFieldListFilter))
    readonly_fields = ("clinic", "note", "engine", "model_id", "input_chars", "output_chars", "outcome", "created_at")
    change_list_template = "admin/notes/noteenginecall/change_list.html"
    date_hierarchy = "created_at"

    def scope_queryset(self, principal: Principal) -> QuerySet:
        return note_engine_calls_visible_to(principal)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        response = super().changelist_view(request, extra_context=extra_context)
        if isinstance(response, TemplateResponse) and is_platform_staff(request.user):
            response.context_data["note_engine_usage"] = note_engine_usage()
        return response
