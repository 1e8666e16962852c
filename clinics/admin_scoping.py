"""Tenant scoping for Django admin.

The rule: a **superuser is platform staff** and sees every clinic. Any other
staff user acts only as a **clinic admin**, i.e. through their active
``Membership(role=admin)`` rows, and sees exactly what ``clinics.access``
returns for those clinics. A staff user with neither sees nothing, whatever
Django model permissions they were granted: Django's permission system knows
nothing about tenants, so it is not consulted for non-superusers at all.

Every admin class mixes in ``TenantScopedAdminMixin`` and names the access
layer function that scopes it (``scope_queryset``). Querysets, object
lookups (``get_object`` goes through ``get_queryset``), foreign key choices,
autocomplete (which asks the target model's admin for its queryset) and
list filters then all stay inside the admin's clinics; another clinic's id
answers like a missing one.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, ClassVar

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from clinics.access import Principal
from clinics.models import Clinic
from clinics.principals import admin_principals_of
from clinics.services import PlatformActor
from voiceai.client_ip import client_ip

_CACHE_ATTR = "_voiceai_admin_principals"

ALL_PERMISSIONS = frozenset({"view", "add", "change", "delete"})

# What Django's own list filters put in the query string after the field
# name (choices, booleans, related-only, dates). No free-form text lookups.
_FILTER_LOOKUPS = frozenset({"exact", "isnull", "id__exact", "gte", "lt"})
# The date hierarchy's parts; the year stops at 9998 because its "until"
# bound is the next year, and datetime ends at 9999.
_DATE_PARTS = {"year": (1, 9998), "month": (1, 12), "day": (1, 31)}


def is_platform_staff(user: Any) -> bool:
    return bool(user and user.is_active and user.is_superuser)


def admin_principals(request: HttpRequest) -> list[Principal]:
    """The clinic-admin principals of the signed-in user, one per clinic they
    administer (active clinics only). Empty for platform staff and for users
    who administer no clinic. Cached on the request."""
    cached = getattr(request, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    principals = admin_principals_of(
        request.user, client_ip=client_ip(request), request_id=getattr(request, "request_id", "")
    )
    setattr(request, _CACHE_ATTR, principals)
    return principals


def administered_clinic_ids(request: HttpRequest) -> list[Any]:
    return [p.clinic.pk for p in admin_principals(request)]


def actor_for(request: HttpRequest, clinic: Clinic) -> Principal | PlatformActor:
    """The actor to record in audit rows for work on ``clinic``: the user's
    own clinic-admin principal there, or for platform staff a
    ``PlatformActor``. Anyone else has no business here."""
    for principal in admin_principals(request):
        if principal.clinic.pk == clinic.pk:
            return principal
    if is_platform_staff(request.user):
        return PlatformActor(
            user=request.user, client_ip=client_ip(request), request_id=getattr(request, "request_id", "")
        )
    raise PermissionDenied


def scoped_union(querysets: list[QuerySet]) -> QuerySet | None:
    """OR together per-clinic querysets (a user may administer several)."""
    if not querysets:
        return None
    return functools.reduce(operator.or_, querysets)


class TenantScopedAdminMixin:
    """Mix into ModelAdmin / InlineModelAdmin before the Django base class.

    Subclasses set:
    - ``scope_queryset(principal)``: the access-layer queryset for one clinic.
    - ``clinic_admin_permissions``: what a clinic admin may do here.
    - ``staff_permissions``: what platform staff may do here (default all).
    """

    clinic_admin_permissions: ClassVar[frozenset[str]] = frozenset({"view"})
    staff_permissions: ClassVar[frozenset[str]] = ALL_PERMISSIONS

    def scope_queryset(self, principal: Principal) -> QuerySet:
        raise NotImplementedError("a tenant-scoped admin must say how it is scoped")

    # --- querysets ----------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        base = super().get_queryset(request)  # type: ignore[misc]
        if is_platform_staff(request.user):
            return base
        scoped = scoped_union([self.scope_queryset(p) for p in admin_principals(request)])
        if scoped is None:
            return base.none()
        # Keep the admin's ordering; the filter comes only from the access layer.
        return scoped.order_by(*(base.query.order_by or self.model._meta.ordering or ["pk"]))  # type: ignore[attr-defined]

    # --- list lookups -------------------------------------------------------

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        """Only the declared list filters and the date hierarchy, with the
        lookups those filters themselves send. Django otherwise accepts any
        lookup on a local field from the query string: ``?text__iregex=^a``
        on segments was an oracle over every transcript of the clinic, with
        no audit row; a bad value (``?client_ip=zzz``) or a year past 9998
        was a 500. A refused lookup is Django's 400."""
        if not super().lookup_allowed(lookup, value, request):  # type: ignore[misc]
            return False
        hierarchy = getattr(self, "date_hierarchy", None)
        if hierarchy and lookup.startswith(f"{hierarchy}__"):
            bounds = _DATE_PARTS.get(lookup.removeprefix(f"{hierarchy}__"))
            return bounds is not None and value.isdigit() and bounds[0] <= int(value) <= bounds[1]
        list_filter = self.get_list_filter(request) if request is not None else self.list_filter  # type: ignore[attr-defined]
        for spec in list_filter:
            if isinstance(spec, (tuple, list)):
                spec = spec[0]
            if isinstance(spec, str):
                if lookup == spec or lookup.removeprefix(f"{spec}__") in _FILTER_LOOKUPS:
                    return True
            elif lookup == getattr(spec, "parameter_name", None):
                return True
        return False

    def formfield_for_foreignkey(self, db_field: models.ForeignKey, request: HttpRequest, **kwargs: Any) -> Any:
        if not is_platform_staff(request.user):
            kwargs["queryset"] = scoped_choices(db_field.related_model, request, self.admin_site)  # type: ignore[attr-defined]
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    # --- permissions --------------------------------------------------------

    def _allowed(self, request: HttpRequest, action: str) -> bool:
        if is_platform_staff(request.user):
            return action in self.staff_permissions
        return action in self.clinic_admin_permissions and bool(admin_principals(request))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request, "view")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, "view") or self._allowed(request, "change")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._allowed(request, "add")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, "change")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, "delete")


class OneClinicDefaultMixin:
    """A new row of a clinic admin who runs one clinic starts in that clinic."""

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)  # type: ignore[misc]
        clinic_ids = administered_clinic_ids(request)
        if len(clinic_ids) == 1:
            initial.setdefault("clinic", clinic_ids[0])
        return initial


def scoped_choices(model: type[models.Model], request: HttpRequest, admin_site: admin.AdminSite) -> QuerySet:
    """Foreign key choices for a clinic admin: what that model's own scoped
    admin shows them; for users, only members of their clinics; otherwise
    nothing. Platform staff never get here."""
    model_admin = admin_site._registry.get(model)
    if isinstance(model_admin, TenantScopedAdminMixin):
        return model_admin.get_queryset(request)
    if model is get_user_model():
        clinic_ids = administered_clinic_ids(request)
        return model._default_manager.filter(memberships__clinic_id__in=clinic_ids).distinct().order_by("username")
    return model._default_manager.none()
