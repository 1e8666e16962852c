"""What a socket connection may do, decided once at connect (through
``voiceai.db.db_async``), never per frame: the principal and session from
the principal core (``clinics.principals``), and the clinic's limits the
stream enforces."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AbstractBaseUser

from clinics.access import Principal
from clinics.principals import principal_for_socket
from sessions.models import ConsultationSession

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
    principal, session = principal_for_socket(token=token, user=user, session_id=session_id, client_ip=client_ip)
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
