"""Base views for the REST API.

``ClinicScopedAPIView`` resolves ``self.principal`` (who acts, for which
clinic) before any handler runs, from the API key or from the signed-in
user's membership. Subclasses reach clinic-owned rows only through
``clinics.access`` with that principal. Like PostHog's routing mixin, the
base refuses subclasses that would skip the resolution or declare a static
queryset (which would bypass the tenant filter).
"""

import ipaddress
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework import exceptions, permissions
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request

from clinics.access import Principal, principal_for_api_key, principal_for_user
from clinics.models import ApiKey
from clinics.services import PlatformActor
from voiceai.errors import NotFound

CLINIC_HEADER = "X-Clinic-Id"
SESSION_CLINIC_KEY = "clinic_id"

# Methods a subclass must not override: together they guarantee that no
# handler runs before the principal is resolved.
_SEALED = ("dispatch", "initial", "perform_authentication", "resolve_principal", "principal")


def client_ip(request: HttpRequest | Request) -> str | None:
    """The caller's address. Behind the TLS proxy (ALB) the last
    X-Forwarded-For entry is the one the proxy itself saw; earlier entries
    are client-controlled."""
    meta = request.META
    candidate = meta.get("REMOTE_ADDR", "")
    if settings.SECURE_PROXY_SSL_HEADER:
        forwarded = [p.strip() for p in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
        if forwarded:
            candidate = forwarded[-1]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def request_id(request: HttpRequest | Request) -> str:
    return getattr(request, "request_id", "") or ""


def principal_from_request(request: Request) -> Principal:
    """The acting principal for an authenticated DRF request.

    Raises NotAuthenticated without credentials, ClinicSuspended (403) for a
    suspended clinic, NotFound for a clinic the user does not belong to.
    """
    ip, rid = client_ip(request), request_id(request)
    wanted_clinic = request.headers.get(CLINIC_HEADER, "").strip()
    if isinstance(request.auth, ApiKey):
        key = request.auth
        if wanted_clinic and wanted_clinic != str(key.clinic_id):
            raise NotFound("Clinic not found.")
        return principal_for_api_key(key, client_ip=ip, request_id=rid)
    user = request.user
    if user is None or not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        raise exceptions.NotAuthenticated()
    session = getattr(request._request, "session", None)
    clinic_id: Any = wanted_clinic or (session.get(SESSION_CLINIC_KEY) if session is not None else None)
    return principal_for_user(user, clinic_id=clinic_id or None, client_ip=ip, request_id=rid)


class ClinicScopedAPIView(GenericAPIView):
    """Base of every view that touches clinic-owned data."""

    permission_classes = [permissions.IsAuthenticated]
    _principal: Principal | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _SEALED:
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__} must not override {name}: it would bypass the clinic scope")
        if cls.__dict__.get("queryset") is not None:
            raise TypeError(f"{cls.__name__} must not declare a static queryset; use clinics.access")

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttling
        self._principal = self.resolve_principal(request)

    def resolve_principal(self, request: Request) -> Principal:
        return principal_from_request(request)

    @property
    def principal(self) -> Principal:
        if self._principal is None:
            raise RuntimeError("principal used before the request was authenticated")
        return self._principal

    def get_queryset(self) -> Any:  # pragma: no cover - views use clinics.access
        raise NotImplementedError("clinic-scoped views get their rows from clinics.access")


class IsPlatformStaff(permissions.BasePermission):
    """Platform operators: a signed-in Django user with ``is_staff``.
    API keys never qualify — they belong to a clinic."""

    message = "Only platform staff may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(
            user is not None
            and getattr(user, "is_authenticated", False)
            and getattr(user, "is_staff", False)
            and not isinstance(request.auth, ApiKey)
        )


class PlatformStaffAPIView(GenericAPIView):
    """Base of the tenant-management endpoints (``/api/v1/clinics/``)."""

    permission_classes = [permissions.IsAuthenticated, IsPlatformStaff]

    @property
    def actor(self) -> PlatformActor:
        return PlatformActor(
            user=self.request.user, client_ip=client_ip(self.request), request_id=request_id(self.request)
        )
