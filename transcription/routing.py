"""WebSocket routes, the Origin check in front of them, and the log filter
that keeps stream tokens out of server logs."""

import logging
import re
from urllib.parse import parse_qs, urlparse

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.urls import re_path

from transcription.consumers import ProducerConsumer, ViewerConsumer

_UUID = r"[0-9a-fA-F-]{1,64}"

websocket_urlpatterns: list = [
    re_path(rf"^ws/v1/sessions/(?P<session_id>{_UUID})/stream$", ProducerConsumer.as_asgi()),
    re_path(rf"^ws/v1/sessions/(?P<session_id>{_UUID})/live$", ViewerConsumer.as_asgi()),
]


class WebSocketOriginGuard:
    """Browsers send an Origin; a page on another site could otherwise open a
    socket that rides on the clinician's session cookie. So:

    - A ``Host`` that is not in ALLOWED_HOSTS is refused (HTTP 403), as
      Django refuses it for HTTP.
    - Origin the same as the socket's own (scheme, host and port, as a
      browser compares them) or listed in WS_ALLOWED_ORIGINS, or absent (not
      a browser): the cookie user may authenticate (``ws_origin_trusted``).
    - Any other Origin (``http://127.0.0.1:9999`` for a socket on :8000, or
      ``http://`` for an HTTPS site): only a ``?token=`` connection is let
      through (the token is the credential, not ambient cookies); without one
      the handshake is refused (HTTP 403).
    """

    def __init__(self, application) -> None:
        self.application = application
        self.extra_origins = {_origin(o) for o in settings.WS_ALLOWED_ORIGINS}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("WebSocketOriginGuard only guards WebSockets")
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
        host = headers.get("host")
        if host is not None and not _host_allowed(host):
            return await WebsocketDenier()(scope, receive, send)
        origin = headers.get("origin")
        trusted = origin is None or (
            _origin(origin) in self.extra_origins
            or (host is not None and _origin(origin) == _origin(f"{_scheme(scope, headers)}://{host}"))
        )
        if not trusted:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if not query.get("token"):
                return await WebsocketDenier()(scope, receive, send)
        return await self.application({**scope, "ws_origin_trusted": trusted}, receive, send)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(value: str) -> str | None:
    """``scheme://host:port`` with the default port spelled out, lower case;
    None for anything that is not an http(s) origin (``null``, garbage)."""
    try:
        parsed = urlparse(value.strip().lower())
        port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme)
    except ValueError:
        return None
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.hostname:
        return None
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return f"{parsed.scheme}://{host}:{port}"


def _scheme(scope: dict, headers: dict[str, str]) -> str:
    """The scheme of the page a same-origin browser socket comes from."""
    if scope.get("scheme") in ("wss", "https"):
        return "https"
    proxy_header = settings.SECURE_PROXY_SSL_HEADER
    if proxy_header and headers.get(proxy_header[0].removeprefix("HTTP_").replace("_", "-").lower()) == proxy_header[1]:
        return "https"
    return "http"


def _host_allowed(host: str) -> bool:
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's HTTP host check
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


_TOKEN_RE = re.compile(r"(token=)[^&\s\"']+")


class RedactStreamTokens(logging.Filter):
    """Stream tokens travel in the query string, which servers log on connect
    (uvicorn: ``"WebSocket /ws/...?token=..." [accepted]``). Tokens never go
    to logs: replace them before any handler formats the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = _TOKEN_RE.sub(r"\1[redacted]", record.msg)
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            if any(isinstance(a, str) and "token=" in a for a in args):
                record.args = tuple(_TOKEN_RE.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in args)
        return True


def install_token_redaction() -> None:
    """Attach the filter to the server loggers that log request paths."""
    for name in ("uvicorn.error", "uvicorn.access", "daphne.server", "daphne.ws_protocol", "django.channels.server"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactStreamTokens) for f in logger.filters):
            logger.addFilter(RedactStreamTokens())
