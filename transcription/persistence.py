"""Who a socket connection is: the stream token or the logged-in user,
checked once per connection (through ``voiceai.db.db_async``), never per
frame. Session writes are ``sessions.services``'."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AbstractBaseUser

from clinics.access import Principal, access_session, memberships_of, principal_for_user
from sessions.models import ConsultationSession
from sessions.tokens import InvalidStreamToken, stream_token_consume
from voiceai.errors import ClinicSuspended, NotFound
from voiceai.logging import get_logger

log = get_logger(__name__)

DEFAULT_MAX_CONCURRENT = 20


@dataclass
class StreamAuth:
    principal: Principal
    session: ConsultationSession
    max_concurrent: int
    language: str
    max_session_seconds: int = 0  # 0: no limit
    vocabulary_name: str = ""
    engine_name: str = ""


def authorize(*, token: str | None, web_session_key: str | None, session_id: str, client_ip: str | None) -> StreamAuth:
    """Who connects to which session. A token wins; otherwise the user
    logged in with the web session cookie (the caller passes its key only
    when the Origin was checked). Raises InvalidStreamToken (4401) or
    NotFound (4404, also for other clinics)."""
    user = _web_session_user(web_session_key) if web_session_key and not token else None
    if token:
        principal = stream_token_consume(token=token, session_id=session_id, client_ip=client_ip)
        session = access_session(principal, session_id)
    elif user is not None and getattr(user, "is_authenticated", False):
        principal, session = _user_session(user, session_id, client_ip)
    else:
        raise InvalidStreamToken("A stream token or a logged-in session is required.", code="auth_required")
    clinic = principal.clinic
    quota = getattr(clinic, "quota", None)
    return StreamAuth(
        principal=principal,
        session=session,
        max_concurrent=quota.max_concurrent_sessions if quota is not None else DEFAULT_MAX_CONCURRENT,
        max_session_seconds=quota.max_session_seconds if quota is not None else 0,
        language=session.language,
        vocabulary_name=clinic.custom_vocabulary_name,
        engine_name=session.engine or clinic.transcription_engine or "",
    )


def _web_session_user(session_key: str) -> AbstractBaseUser | None:
    # What Channels' AuthMiddlewareStack does, but only when needed and
    # inside this one DB call (no extra thread hop per connection).
    engine = import_module(settings.SESSION_ENGINE)
    request = SimpleNamespace(session=engine.SessionStore(session_key))
    return auth.get_user(request)


def _user_session(user: AbstractBaseUser, session_id: str, client_ip: str | None):
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
