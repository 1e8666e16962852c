"""Base views for the REST API.

``ClinicScopedAPIView`` resolves ``self.principal`` (who acts, for which
clinic) before any handler runs, from the API key or from the signed-in
user's membership. Subclasses reach clinic-owned rows only through
``clinics.access`` with that principal. Like PostHog's routing mixin, the
base refuses subclasses that would skip the resolution or declare a static
queryset (which would bypass the tenant filter).
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from rest_framework import exceptions, permissions, serializers
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.access import Principal
from clinics.models import ApiKey
from clinics.principals import principal_for_caller
from clinics.services import PlatformActor
from voiceai.client_ip import client_ip
from voiceai.errors import Close, DomainError, Forbidden, InvalidInput, NotFound

CLINIC_HEADER = "X-Clinic-Id"
SESSION_CLINIC_KEY = "clinic_id"

# Methods a subclass must not override: together they guarantee that no
# handler runs before the principal is resolved.
_SEALED = ("dispatch", "initial", "perform_authentication", "resolve_principal", "principal")


class RequestTooLarge(DomainError):
    status = 413
    close_code = Close.PROTOCOL
    code = "request_too_large"
    default_message = "The request body is too large."


def check_body_size(request: HttpRequest | Request, max_bytes: int | None = None) -> None:
    """Refuse oversize bodies before anything reads them. DRF parses JSON
    from the raw stream, which skips Django's DATA_UPLOAD_MAX_MEMORY_SIZE
    check."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE if max_bytes is None else max_bytes
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw)
    except ValueError:
        raise InvalidInput("The Content-Length header is malformed.", code="malformed_request") from None
    if length > limit:
        raise RequestTooLarge(details={"max_bytes": limit})


def validated_data(
    serializer_class: type[serializers.Serializer],
    data: Any,
    *,
    partial: bool = False,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate a request body: a JSON object, no unknown or read-only
    fields (400 ``unknown_field`` / ``read_only_field``), right types (400
    ``invalid``)."""
    if not isinstance(data, dict):
        raise InvalidInput("The body must be a JSON object.")
    fields = serializer_class().fields
    unknown = sorted(k for k in data if k not in fields)
    if unknown:
        raise InvalidInput(
            "The body has unknown fields.", code="unknown_field", details={k: "Unknown field." for k in unknown}
        )
    read_only = sorted(k for k in data if fields[k].read_only)
    if read_only:
        raise InvalidInput(
            "The body has read-only fields.", code="read_only_field", details={k: "Read-only field." for k in read_only}
        )
    serializer = serializer_class(data=data, partial=partial, context=context or {})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class IgnoreFormatNegotiation(DefaultContentNegotiation):
    """For views that answer with their own media types (transcript
    formats, audio): ``?format=`` is the view's parameter, not DRF's format
    override, and an ``Accept: audio/wav`` must not give 406. Errors are
    still rendered as JSON."""

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


class ApiView(GenericAPIView):
    """Common base: body size limit and Django's own oversize-body error in
    the API's JSON error shape.

    The limit applies to every body except multipart uploads, whose files
    Django streams to disk (DATA_UPLOAD_MAX_MEMORY_SIZE excludes files, and
    its multipart parser still caps the other fields). A view that accepts
    uploads checks their total size itself, or sets ``max_body_bytes``.
    """

    #: Largest accepted body in bytes; None means DATA_UPLOAD_MAX_MEMORY_SIZE.
    max_body_bytes: int | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        multipart = request.META.get("CONTENT_TYPE", "").lower().startswith("multipart/")
        if self.max_body_bytes is not None or not multipart:
            check_body_size(request, self.max_body_bytes)
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        # Every answer is one clinic's data, and several carry stream tokens:
        # no browser or proxy may keep a copy.
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "private, no-store"
        return response

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, RequestDataTooBig):
            exc = RequestTooLarge()
        return super().handle_exception(exc)


def request_id(request: HttpRequest | Request) -> str:
    return getattr(request, "request_id", "") or ""


def principal_from_request(request: Request) -> Principal:
    """The acting principal for an authenticated DRF request (the principal
    core decides; this reads the request's parts).

    Raises NotAuthenticated without credentials, ClinicSuspended (403) for a
    suspended clinic, NotFound for a clinic the user does not belong to.
    """
    ip, rid = client_ip(request), request_id(request)
    wanted_clinic = request.headers.get(CLINIC_HEADER, "").strip()
    if isinstance(request.auth, ApiKey):
        return principal_for_caller(api_key=request.auth, wanted_clinic=wanted_clinic, client_ip=ip, request_id=rid)
    user = request.user
    if user is None or not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        raise exceptions.NotAuthenticated()
    session = getattr(request._request, "session", None)
    return principal_for_caller(
        user=user,
        wanted_clinic=wanted_clinic,
        remembered_clinic=session.get(SESSION_CLINIC_KEY) if session is not None else None,
        client_ip=ip,
        request_id=rid,
    )


class ClinicScopedAPIView(ApiView):
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
    """Platform operators: a signed-in superuser, as in the admin
    (``clinics.admin_scoping.is_platform_staff``). Not ``is_staff``: every
    clinic admin has it to sign in to /admin/. API keys never qualify —
    they belong to a clinic."""

    message = "Only platform staff may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(
            user is not None
            and getattr(user, "is_authenticated", False)
            and getattr(user, "is_superuser", False)
            and not isinstance(request.auth, ApiKey)
        )


class PlatformStaffAPIView(ApiView):
    """Base of the tenant-management endpoints (``/api/v1/clinics/``)."""

    permission_classes = [permissions.IsAuthenticated, IsPlatformStaff]

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> None:
        if request.authenticators and not request.successful_authenticator:
            raise exceptions.NotAuthenticated()
        if self.kwargs.get("id") is not None:
            # A tenant's existence is nobody else's business: like the
            # access layer, answer an object path with 404.
            raise NotFound("Clinic not found.")
        raise Forbidden("Only platform staff may do this.", code="staff_required")

    @property
    def actor(self) -> PlatformActor:
        return PlatformActor(
            user=self.request.user, client_ip=client_ip(self.request), request_id=request_id(self.request)
        )
