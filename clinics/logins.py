"""Glue between Django's sign-in signals, django-axes and the audit log.

Both login pages (the console's and the admin's) go through
``django.contrib.auth.authenticate``, which sends ``user_login_failed`` for
a wrong password; django-axes counts the same signal for its lockouts.
"""

from typing import Any

from django.http import HttpRequest

from clinics.api.base import request_id
from clinics.services import login_failure_audit
from voiceai.client_ip import client_ip


def on_login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any) -> None:
    username = credentials.get("username")
    if not isinstance(username, str) or request is None:
        return
    login_failure_audit(
        username=username,
        client_ip=client_ip(request),
        request_id=request_id(request),
        path=request.path,
    )


def axes_client_str(username: str, ip_address: str, user_agent: str, path_info: str, request: HttpRequest) -> str:
    """What django-axes writes into its log lines: never the username, which
    is sometimes a password typed into the wrong field."""
    return f"{{ip_address: {ip_address!r}, path_info: {path_info!r}}}"
