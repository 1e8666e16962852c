"""Stream tokens: short-lived, single-use, bound to one session and clinic.

The REST API issues them; the WebSocket consumers consume them once at
connect. They are signed (Django's signing, salted) rather than stored, and
only their random ``jti`` is remembered once used.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinics.access import Principal, access_session, principal_for_api_key, principal_for_user
from clinics.models import ApiKey, UsedStreamToken
from sessions.models import ConsultationSession
from voiceai.errors import DomainError, NotFound

_SALT = "voiceai.stream-token.v1"


class InvalidStreamToken(DomainError):
    status = 401
    code = "invalid_stream_token"
    default_message = "The stream token is invalid, expired or already used."


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


def stream_token_issue(*, principal: Principal, session: ConsultationSession) -> IssuedToken:
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
    try:
        payload = signing.loads(token, salt=_SALT, max_age=settings.STREAM_TOKEN_TTL_SECONDS)
    except (signing.BadSignature, TypeError, ValueError):
        raise InvalidStreamToken() from None
    if not isinstance(payload, dict) or payload.get("s") != str(session_id):
        raise InvalidStreamToken()
    principal = _issuer_principal(payload, client_ip=client_ip)
    access_session(principal, session_id)
    try:
        with transaction.atomic():
            UsedStreamToken.objects.create(jti=str(payload["j"])[:32], clinic=principal.clinic)
    except IntegrityError:
        raise InvalidStreamToken("The stream token was already used.") from None
    return principal


def _issuer_principal(payload: dict, *, client_ip: str | None) -> Principal:
    if payload.get("k") is not None:
        key = ApiKey.objects.select_related("clinic").filter(pk=payload["k"], revoked_at__isnull=True).first()
        if key is None or str(key.clinic_id) != payload.get("c"):
            raise InvalidStreamToken()
        return principal_for_api_key(key, client_ip=client_ip)
    if payload.get("u") is not None:
        user = get_user_model().objects.filter(pk=payload["u"], is_active=True).first()
        if user is None:
            raise InvalidStreamToken()
        return principal_for_user(user, clinic_id=payload.get("c"), client_ip=client_ip)
    raise InvalidStreamToken()


def stream_tokens_purge_used(*, older_than_seconds: int | None = None) -> int:
    """Used-token rows older than the token lifetime guard nothing."""
    age = older_than_seconds or settings.STREAM_TOKEN_TTL_SECONDS * 2
    deleted, _ = UsedStreamToken.objects.filter(used_at__lt=timezone.now() - timedelta(seconds=age)).delete()
    return deleted
