"""The principal core: who is acting, for which clinic.

Every entry point turns its credentials into a ``clinics.access.Principal``
here, with the caller's IP from ``voiceai.client_ip``:

- an API key (REST): ``principal_for_caller(api_key=...)``; the key's clinic
  only — naming another clinic finds nothing;
- a signed-in user and the clinic they chose (REST, console, admin):
  ``principal_for_caller(user=...)`` and ``admin_principals_of``;
- a stream token or the signed-in user at a socket's connect:
  ``principal_for_socket``.

Stream tokens are short-lived, single-use, bound to one session and clinic.
The REST API issues them; the WebSocket endpoints consume them once at
connect. They are signed (Django's signing, salted) rather than stored, and
only their random ``jti`` is remembered once used.

Membership and the clinic's state (``principal_for_user``,
``principal_for_api_key``) are checked by the access layer.
"""

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinics.access import (
    Principal,
    access_session,
    memberships_of,
    principal_for_api_key,
    principal_for_user,
    stream_token_spend,
)
from clinics.models import ApiKey, Role, UsedStreamToken
from voiceai.errors import ClinicSuspended, Close, DomainError, NotFound

_SALT = "voiceai.stream-token.v1"


class _SessionLike(Protocol):
    id: Any
    clinic_id: Any


class InvalidStreamToken(DomainError):
    status = 401
    close_code = Close.UNAUTHORIZED
    code = "invalid_stream_token"
    default_message = "The stream token is invalid, expired or already used."


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


def stream_token_issue(*, principal: Principal, session: _SessionLike) -> IssuedToken:
    if session.clinic_id != principal.clinic.pk:
        raise NotFound("Session not found.")
    payload = {
        "s": str(session.id),
        "c": str(principal.clinic.pk),
        "j": secrets.token_hex(16),
        "u": principal.user.pk if principal.user is not None else None,
        "k": principal.api_key.pk if principal.api_key is not None else None,
    }
    ttl = settings.STREAM_TOKEN_TTL_SECONDS
    return IssuedToken(
        token=signing.dumps(payload, salt=_SALT, compress=True),
        expires_at=timezone.now() + timedelta(seconds=ttl),
    )


def stream_token_consume(*, token: str, session_id: object, client_ip: str | None = None) -> Principal:
    """Verify and spend a token for ``session_id``; returns the issuer's
    principal. A token for another session, an expired, forged or reused
    token all raise InvalidStreamToken; a session of another clinic raises
    NotFound through the access layer."""
    return _token_consume(token=token, session_id=session_id, client_ip=client_ip)[0]


def _token_consume(*, token: str, session_id: object, client_ip: str | None) -> tuple[Principal, Any]:
    """``stream_token_consume``, also returning the session it reads."""
    try:
        payload = signing.loads(token, salt=_SALT, max_age=settings.STREAM_TOKEN_TTL_SECONDS)
    except (signing.BadSignature, TypeError, ValueError):
        raise InvalidStreamToken() from None
    if not isinstance(payload, dict) or payload.get("s") != str(session_id):
        raise InvalidStreamToken()
    if payload.get("k") is not None and transaction.get_connection().vendor == "postgresql":
        # (SQLite, ``make run``: the ORM's queries below.)
        return _api_key_token_consume(payload, session_id=session_id, client_ip=client_ip)
    principal = _issuer_principal(payload, client_ip=client_ip)
    session = access_session(principal, session_id)
    try:
        # A reused token fails on the unique jti. Outside a transaction (the
        # socket's connect) the failed INSERT harms nothing and needs no
        # BEGIN/COMMIT of its own; inside one, a savepoint keeps it usable.
        if transaction.get_connection().in_atomic_block:
            with transaction.atomic():
                UsedStreamToken.objects.create(jti=str(payload["j"])[:32], clinic=principal.clinic)
        else:
            UsedStreamToken.objects.create(jti=str(payload["j"])[:32], clinic=principal.clinic)
    except IntegrityError:
        raise InvalidStreamToken("The stream token was already used.") from None
    return principal, session


def _api_key_token_consume(payload: dict, *, session_id: object, client_ip: str | None) -> tuple[Principal, Any]:
    """An integrator's token (the usual producer): the key, clinic, quota and
    session read and the token spent in one round trip. Same answers, in the
    same order, as the user token's path below."""
    try:
        clinic_id = uuid.UUID(str(payload.get("c")))
        key_id = int(payload["k"])
    except (TypeError, ValueError):
        raise InvalidStreamToken() from None
    found = stream_token_spend(key_id=key_id, clinic_id=clinic_id, session_id=session_id, jti=str(payload["j"])[:32])
    if found.api_key is None:
        raise InvalidStreamToken()
    principal = principal_for_api_key(found.api_key, client_ip=client_ip)  # ClinicSuspended
    if found.session is None:
        raise NotFound("Session not found.")
    if not found.spent:
        raise InvalidStreamToken("The stream token was already used.")
    return principal, found.session


def _issuer_principal(payload: dict, *, client_ip: str | None) -> Principal:
    if payload.get("k") is not None:
        # The clinic's quota comes along: the socket's connect needs its limits.
        keys = ApiKey.objects.select_related("clinic", "clinic__quota").filter(pk=payload["k"], revoked_at__isnull=True)
        key = next(iter(keys.order_by()[:1]), None)
        if key is None or str(key.clinic_id) != payload.get("c"):
            raise InvalidStreamToken()
        return principal_for_api_key(key, client_ip=client_ip)
    if payload.get("u") is not None:
        user = get_user_model().objects.filter(pk=payload["u"], is_active=True).first()
        if user is None:
            raise InvalidStreamToken()
        return principal_for_user(user, clinic_id=payload.get("c"), client_ip=client_ip)
    raise InvalidStreamToken()


# --- callers -------------------------------------------------------------------------------


def principal_for_caller(
    *,
    api_key: ApiKey | None = None,
    user: Any = None,
    wanted_clinic: str = "",
    remembered_clinic: object | None = None,
    client_ip: str | None = None,
    request_id: str = "",
) -> Principal:
    """An API key's principal, or a signed-in user's in the clinic they
    named (``wanted_clinic``, e.g. the X-Clinic-Id header), else the one
    they picked earlier (``remembered_clinic``, the web session's choice,
    ignored once their membership there ended), else their first clinic.

    Raises NotFound for a clinic the caller does not belong to (also for an
    API key naming another clinic), ClinicSuspended for a suspended one."""
    if api_key is not None:
        if wanted_clinic and _as_uuid(wanted_clinic) != api_key.clinic_id:
            raise NotFound("Clinic not found.")
        return principal_for_api_key(api_key, client_ip=client_ip, request_id=request_id)
    if wanted_clinic:
        return principal_for_user(user, clinic_id=wanted_clinic, client_ip=client_ip, request_id=request_id)
    if remembered_clinic:
        try:
            return principal_for_user(user, clinic_id=remembered_clinic, client_ip=client_ip, request_id=request_id)
        except NotFound:
            pass  # membership ended since it was picked: fall back to the user's first clinic
    return principal_for_user(user, client_ip=client_ip, request_id=request_id)


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def admin_principals_of(user: Any, *, client_ip: str | None, request_id: str = "") -> list[Principal]:
    """A staff user's clinic-admin principals, one per active clinic they
    administer (a suspended clinic's admins lose admin access with it).
    Platform staff (superusers) act as themselves, not through these."""
    if not (user.is_authenticated and user.is_active and user.is_staff and not user.is_superuser):
        return []
    principals: list[Principal] = []
    for membership in memberships_of(user):
        if membership.role != Role.ADMIN:
            continue
        try:
            principals.append(
                principal_for_user(user, clinic_id=membership.clinic_id, client_ip=client_ip, request_id=request_id)
            )
        except DomainError:
            continue
    return principals


def principal_for_socket(
    *, token: str | None, user: Any, session_id: object, client_ip: str | None
) -> tuple[Principal, Any]:
    """Who connects to which session: a stream token wins; otherwise the
    signed-in user (the caller passes one only when the Origin was
    checked). Returns the principal and the session. Raises
    InvalidStreamToken without either, NotFound ("Session not found.", also
    for another clinic's session)."""
    try:
        if token:
            return _token_consume(token=token, session_id=session_id, client_ip=client_ip)
        if user is not None and getattr(user, "is_authenticated", False):
            return _user_session(user, session_id, client_ip)
    except NotFound:
        raise NotFound("Session not found.") from None
    raise InvalidStreamToken("A stream token or a logged-in session is required.", code="auth_required")


def _user_session(user: Any, session_id: object, client_ip: str | None) -> tuple[Principal, Any]:
    # A user may belong to several clinics: try each membership through the
    # access layer; none matching is the same 404 as a missing session. A
    # suspended clinic must not hide the session of another, active one.
    suspended: ClinicSuspended | None = None
    for membership in memberships_of(user):
        try:
            principal = principal_for_user(user, clinic_id=membership.clinic_id, client_ip=client_ip)
        except ClinicSuspended as exc:
            suspended = exc
            continue
        try:
            return principal, access_session(principal, session_id)
        except NotFound:
            continue
    if suspended is not None:
        raise suspended
    raise NotFound("Session not found.")
