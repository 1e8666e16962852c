"""The caller's IP address, for audit rows — one rule for REST, the admin,
the console and the WebSocket endpoints.

Behind the TLS proxy (``BEHIND_TLS_PROXY``, which sets
``SECURE_PROXY_SSL_HEADER``) the proxy appends the address it saw to
``X-Forwarded-For``: the *last* entry is the last trusted hop; every earlier
entry is whatever the client sent and proves nothing. Without the proxy the
connection's own peer address counts and ``X-Forwarded-For`` is ignored.

The ASGI server is not asked to rewrite the peer address (uvicorn's
``--forwarded-allow-ips "*"`` would take the *first*, client-controlled
entry): the peer is read as connected and this module decides. A value that
is not an IP address is stored as no address (None), never passed on to a
database column that would refuse it.
"""

import ipaddress
from collections.abc import Mapping
from typing import Any

from django.conf import settings


def client_ip_decide(*, peer: str | None, forwarded_for: str | None) -> str | None:
    """The client IP from the connection's peer address and the raw
    ``X-Forwarded-For`` value (several headers joined with commas)."""
    candidate = peer or ""
    if settings.SECURE_PROXY_SSL_HEADER:
        hops = [part.strip() for part in (forwarded_for or "").split(",") if part.strip()]
        if hops:
            candidate = hops[-1]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def client_ip(source: Any) -> str | None:
    """The client IP of a Django/DRF request (``META``) or an ASGI scope."""
    meta = getattr(source, "META", None)
    if isinstance(meta, Mapping):
        return client_ip_decide(peer=meta.get("REMOTE_ADDR"), forwarded_for=meta.get("HTTP_X_FORWARDED_FOR"))
    client = source.get("client") if isinstance(source, Mapping) else None
    forwarded = [value.decode("latin-1") for name, value in (source.get("headers") or []) if name == b"x-forwarded-for"]
    return client_ip_decide(peer=client[0] if client else None, forwarded_for=",".join(forwarded) or None)
