"""Django admin for tenants. Scoping rules are in ``clinics.admin_scoping``;
writes go through ``clinics.services`` so the audit rows are the same as the
API's. Admin classes stay thin: choose fields, call a service, show a message.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.db.models import QuerySet
from django.http import HttpRequest

from clinics import access, services
from clinics.access import Principal
from clinics.admin_scoping import (
    OneClinicDefaultMixin,
    TenantScopedAdminMixin,
    actor_for,
    administered_clinic_ids,
    is_platform_staff,
)
from clinics.models import ApiKey, AuditEvent, Clinic, ClinicQuota, Membership, Role
from sessions.selectors import clinic_usage
from voiceai.errors import DomainError

admin.site.site_header = "VoiceAI administration"
admin.site.site_title = "VoiceAI admin"


def _adopt(obj: Any, created: Any) -> None:
    """Make the admin's unsaved ``obj`` stand for the row a service created,
    so Django's redirects and messages point at the real object."""
    obj.__dict__.update({k: v for k, v in created.__dict__.items() if k != "_state"})
    obj._state.adding = False
    obj._state.db = created._state.db


# --- clinics -------------------------------------------------------------------


class ClinicForm(forms.ModelForm):
    transcription_engine = forms.ChoiceField(
        choices=[("", "(platform default)"), ("local", "local"), ("fake", "fake"), ("aws", "aws")], required=False
    )

    class Meta:
        model = Clinic
        fields = (
            "name", "slug", "default_language", "time_zone", "is_active", "retention_days", "kms_key_id",
            "transcription_engine", "custom_vocabulary_name", "priority", "producer_grace_minutes", "consent_required",
            "mcp_enabled", "mcp_key_roles",
            "low_confidence_threshold", "notes_bedrock_enabled",
        )  # fmt: skip


@admin.register(Clinic)
class ClinicAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Platform staff create, edit, suspend and reactivate tenants. A clinic
    admin sees their own clinic, read-only."""

    form = ClinicForm
    clinic_admin_permissions = frozenset({"view"})
    staff_permissions = frozenset({"view", "add", "change"})  # no delete: suspend instead
    list_display = ("name", "slug", "default_language", "is_active", "consent_required", "mcp_enabled", "created_at")
    search_fields = ("name", "slug")
    actions = ("suspend_clinics", "reactivate_clinics")

    def scope_queryset(self, principal: Principal) -> QuerySet:
        return Clinic.objects.filter(pk=principal.clinic.pk)

    def get_list_filter(self, request: HttpRequest) -> tuple:
        return ("is_active", "default_language") if is_platform_staff(request.user) else ()

    def get_fields(self, request: HttpRequest, obj: Clinic | None = None) -> list[str]:
        if obj is None:
            return ["name", "slug", "default_language"]
        return [
            "name", "slug", "default_language", "time_zone", "is_active", "retention_days", "kms_key_id",
            "transcription_engine", "custom_vocabulary_name", "priority", "producer_grace_minutes", "consent_required",
            "mcp_enabled", "mcp_key_roles",
            "low_confidence_threshold", "notes_bedrock_enabled",
            "quota_summary",
            "created_at",
        ]  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: Clinic | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("slug", "quota_summary", "created_at")

    @admin.display(description="Quota (used / limit)")
    def quota_summary(self, obj: Clinic) -> str:
        return quota_usage_text(obj)

    def save_model(self, request: HttpRequest, obj: Clinic, form: forms.ModelForm, change: bool) -> None:
        actor = actor_for(request, obj)
        if not change:
            created = services.clinic_create(
                name=obj.name, slug=obj.slug, default_language=obj.default_language, actor=actor
            )
            _adopt(obj, created)
            return
        changed = {k: form.cleaned_data[k] for k in form.changed_data if k in services.CLINIC_UPDATABLE_FIELDS}
        if changed:
            services.clinic_update(clinic=obj, actor=actor, **changed)
        if "is_active" in form.changed_data:
            toggle = services.clinic_reactivate if obj.is_active else services.clinic_suspend
            toggle(clinic=obj, actor=actor)

    @admin.action(description="Suspend selected clinics", permissions=["change"])
    def suspend_clinics(self, request: HttpRequest, queryset: QuerySet[Clinic]) -> None:
        for clinic in queryset:
            services.clinic_suspend(clinic=clinic, actor=actor_for(request, clinic))
        self.message_user(request, f"Suspended {len(queryset)} clinic(s).")

    @admin.action(description="Reactivate selected clinics", permissions=["change"])
    def reactivate_clinics(self, request: HttpRequest, queryset: QuerySet[Clinic]) -> None:
        for clinic in queryset:
            services.clinic_reactivate(clinic=clinic, actor=actor_for(request, clinic))
        self.message_user(request, f"Reactivated {len(queryset)} clinic(s).")


def quota_usage_text(clinic: Clinic) -> str:
    try:
        quota = clinic.quota
    except ClinicQuota.DoesNotExist:
        return "no quota row"
    usage = clinic_usage(clinic=clinic)
    return (
        f"live sessions {usage['live_sessions']} / {quota.max_concurrent_sessions}; "
        f"audio minutes this month {usage['audio_minutes_this_month']} / {quota.audio_minutes_per_month}; "
        f"storage bytes {usage['storage_bytes']} / {quota.storage_bytes}; "
        f"max session {quota.max_session_seconds} s"
    )


@admin.register(ClinicQuota)
class ClinicQuotaAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Limits with their usage. Clinic admins read; platform staff change
    (audited as ``quota.update`` by the service)."""

    clinic_admin_permissions = frozenset({"view"})
    staff_permissions = frozenset({"view", "change"})  # the row comes with its clinic
    list_display = ("clinic", "live_sessions", "audio_minutes", "storage", "max_session_seconds", "updated_at")
    fields = (
        "clinic", "max_concurrent_sessions", "live_sessions", "max_session_seconds",
        "audio_minutes_per_month", "audio_minutes", "storage_bytes", "storage", "updated_at",
    )  # fmt: skip
    readonly_fields = ("clinic", "live_sessions", "audio_minutes", "storage", "updated_at")

    def scope_queryset(self, principal: Principal) -> QuerySet:
        return access.quotas_visible_to(principal)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("clinic")

    @staticmethod
    def _usage(obj: ClinicQuota) -> dict[str, Any]:
        # Three columns per row ask for it: compute once per row object.
        if not hasattr(obj, "_usage_cache"):
            obj._usage_cache = clinic_usage(clinic=obj.clinic)  # type: ignore[attr-defined]
        return obj._usage_cache  # type: ignore[attr-defined]

    @admin.display(description="Live sessions (used / limit)")
    def live_sessions(self, obj: ClinicQuota) -> str:
        return f"{self._usage(obj)['live_sessions']} / {obj.max_concurrent_sessions}"

    @admin.display(description="Audio minutes this month (used / limit)")
    def audio_minutes(self, obj: ClinicQuota) -> str:
        return f"{self._usage(obj)['audio_minutes_this_month']} / {obj.audio_minutes_per_month}"

    @admin.display(description="Storage bytes (used / limit)")
    def storage(self, obj: ClinicQuota) -> str:
        return f"{self._usage(obj)['storage_bytes']} / {obj.storage_bytes}"

    def save_model(self, request: HttpRequest, obj: ClinicQuota, form: forms.ModelForm, change: bool) -> None:
        limits = {k: form.cleaned_data[k] for k in form.changed_data if k in services.QUOTA_FIELDS}
        if limits:
            services.quota_update(clinic=obj.clinic, actor=actor_for(request, obj.clinic), **limits)


# --- members --------------------------------------------------------------------


class NewMemberForm(forms.ModelForm):
    """A clinic admin adds a member by creating their login: picking from the
    platform's user table would show other clinics' users."""

    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    class Meta:
        model = Membership
        fields = ("clinic", "role")

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        if get_user_model()._default_manager.filter(username__iexact=username).exists():
            raise forms.ValidationError("This username is taken.")
        return username

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            try:
                user = get_user_model()(username=cleaned.get("username", ""), email=cleaned.get("email", ""))
                validate_password(password, user)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class MembershipChangeForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ("role",)

    def clean_role(self) -> str:
        role = self.cleaned_data["role"]
        instance = self.instance
        demoting = instance.pk and instance.role == Role.ADMIN and role != Role.ADMIN
        if demoting and instance.clinic.memberships.filter(role=Role.ADMIN).count() <= 1:
            raise forms.ValidationError("A clinic must keep at least one admin.")
        return role


def _let_admins_sign_in(membership: Membership) -> None:
    """A clinic admin works in this admin site, which needs ``is_staff``;
    what they see there is still limited to their clinics."""
    user = membership.user
    if membership.role == Role.ADMIN and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])


@admin.register(Membership)
class MembershipAdmin(OneClinicDefaultMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    clinic_admin_permissions = frozenset({"view", "add", "change", "delete"})
    list_display = ("user", "clinic", "role", "created_at")
    search_fields = ("user__username", "user__email")
    autocomplete_fields = ("clinic", "user")

    def scope_queryset(self, principal: Principal) -> QuerySet:
        return access.memberships_visible_to(principal)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("user", "clinic")

    def get_list_filter(self, request: HttpRequest) -> tuple:
        if is_platform_staff(request.user) or len(administered_clinic_ids(request)) > 1:
            return ("role", ("clinic", admin.RelatedOnlyFieldListFilter))
        return ("role",)

    def get_form(self, request: HttpRequest, obj: Membership | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            kwargs["form"] = MembershipChangeForm
        elif not is_platform_staff(request.user):
            kwargs["form"] = NewMemberForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Membership | None = None) -> list[str]:
        if obj is not None:
            return ["user", "clinic", "role", "created_at"]
        if is_platform_staff(request.user):
            return ["clinic", "user", "role"]
        return ["clinic", "username", "email", "password", "role"]

    def get_readonly_fields(self, request: HttpRequest, obj: Membership | None = None) -> tuple[str, ...]:
        return ("user", "clinic", "created_at") if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Membership, form: forms.ModelForm, change: bool) -> None:
        actor = actor_for(request, obj.clinic)
        if change:
            services.membership_update(membership=obj, role=obj.role, actor=actor)
            _let_admins_sign_in(obj)
            return
        if "username" in form.cleaned_data:
            user = get_user_model()._default_manager.create_user(
                username=form.cleaned_data["username"],
                email=form.cleaned_data.get("email", ""),
                password=form.cleaned_data["password"],
                # A clinic admin signs in to this admin site; clinicians use the app.
                is_staff=obj.role == Role.ADMIN,
            )
        else:
            user = obj.user
        created = services.membership_add(clinic=obj.clinic, user=user, role=obj.role, actor=actor)
        _adopt(obj, created)
        _let_admins_sign_in(obj)

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        try:
            services.membership_remove(membership=obj, actor=actor_for(request, obj.clinic))
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset:
            self.delete_model(request, membership)


# --- API keys -------------------------------------------------------------------


class ApiKeyChangeForm(forms.ModelForm):
    revoke = forms.BooleanField(required=False, help_text="Revoke this key now. This cannot be undone.")

    class Meta:
        model = ApiKey
        fields = ()


@admin.register(ApiKey)
class ApiKeyAdmin(OneClinicDefaultMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """Keys are created here (the raw key is shown once, in a message) and
    revoked, never edited or deleted: the audit trail refers to them. Only
    the SHA-256 of the key is stored and it is never displayed."""

    clinic_admin_permissions = frozenset({"view", "add", "change"})
    staff_permissions = frozenset({"view", "add", "change"})
    list_display = ("name", "prefix", "clinic", "role", "created_at", "last_used_at", "revoked_at")
    list_filter = ("role",)
    search_fields = ("name", "prefix")
    autocomplete_fields = ("clinic",)
    actions = ("revoke_keys",)

    def scope_queryset(self, principal: Principal) -> QuerySet:
        return access.api_keys_visible_to(principal)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("clinic")

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            kwargs["form"] = ApiKeyChangeForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["clinic", "name", "role"]
        fields = ["name", "prefix", "clinic", "role", "created_by", "created_at", "last_used_at", "revoked_at"]
        return fields if obj.revoked_at else [*fields, "revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("name", "prefix", "clinic", "role", "created_by", "created_at", "last_used_at", "revoked_at")

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        actor = actor_for(request, obj.clinic)
        if change:
            if form.cleaned_data.get("revoke"):
                services.api_key_revoke(api_key=obj, actor=actor)
            return
        key, raw = services.api_key_create(
            clinic=obj.clinic, role=obj.role, name=obj.name, created_by=request.user, actor=actor
        )
        _adopt(obj, key)
        # Shown once: only the hash is stored, so it can't be shown again.
        self.message_user(
            request,
            f"New API key (copy it now, it will not be shown again): {raw}",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(api_key=key, actor=actor_for(request, key.clinic))
            count += 1
        self.message_user(request, f"Revoked {count} API key(s).")


# --- audit ----------------------------------------------------------------------------


@admin.register(AuditEvent)
class AuditEventAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Append-only: nobody adds, changes or deletes audit rows here."""

    clinic_admin_permissions = frozenset({"view"})
    staff_permissions = frozenset({"view"})
    list_display = ("created_at", "clinic", "action", "object_type", "object_id", "actor_label", "client_ip")
    search_fields = ("object_id", "actor_label", "request_id")
    date_hierarchy = "created_at"

    def scope_queryset(self, principal: Principal) -> QuerySet:
        return access.audit_events_visible_to(principal)

    def get_list_filter(self, request: HttpRequest) -> tuple:
        filters: tuple = ("action", "object_type")
        if is_platform_staff(request.user) or len(administered_clinic_ids(request)) > 1:
            filters += (("clinic", admin.RelatedOnlyFieldListFilter),)
        return filters

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("clinic")

    def get_readonly_fields(self, request: HttpRequest, obj: AuditEvent | None = None) -> list[str]:
        return [f.name for f in AuditEvent._meta.fields]


# --- platform users: staff only ---------------------------------------------------------
# The user table spans every clinic; clinic admins manage their people through
# memberships, so Django's user and group admins are for platform staff only.


class StaffOnlyMixin:
    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Nothing at all for anyone else, so that every object page answers
        # like a missing object: otherwise a clinic admin got 403 for a user
        # id that exists and a redirect for one that doesn't.
        queryset = super().get_queryset(request)  # type: ignore[misc]
        return queryset if is_platform_staff(request.user) else queryset.none()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_platform_staff(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_platform_staff(request.user)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return is_platform_staff(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_platform_staff(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_platform_staff(request.user)


class PlatformUserAdmin(StaffOnlyMixin, UserAdmin):
    pass


class PlatformGroupAdmin(StaffOnlyMixin, GroupAdmin):
    pass


for _model, _admin_class in ((get_user_model(), PlatformUserAdmin), (Group, PlatformGroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin_class)
