"""WebSocket routes, the Origin check in front of them, and the log filter
that keeps stream tokens out of server logs."""

import logging
import re
from urllib.parse import parse_qs, urlparse

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.urls import re_path

from transcription.consumers import ProducerConsumer, ViewerConsumer

_UUID = r"[0-9a-fA-F-]{1,64}"

websocket_urlpatterns: list = [
    re_path(rf"^ws/v1/sessions/(?P<session_id>{_UUID})/stream$", ProducerConsumer.as_asgi()),
    re_path(rf"^ws/v1/sessions/(?P<session_id>{_UUID})/live$", ViewerConsumer.as_asgi()),
]


class WebSocketOriginGuard(OriginValidator):
    """Browsers send an Origin; a page on another site could otherwise open a
    socket that rides on the clinician's session cookie. So:

    - Origin allowed (ALLOWED_HOSTS or WS_ALLOWED_ORIGINS) or absent (not a
      browser): the cookie user may authenticate (``ws_origin_trusted``).
    - Origin present but not allowed: only a ``?token=`` connection is let
      through (the token is the credential, not ambient cookies); without one
      the handshake is refused (HTTP 403).
    """

    def __init__(self, application) -> None:
        allowed = list(settings.ALLOWED_HOSTS) + list(getattr(settings, "WS_ALLOWED_ORIGINS", []))
        if settings.DEBUG:
            allowed += [".localhost", "127.0.0.1", "[::1]"]
        super().__init__(application, allowed)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("WebSocketOriginGuard only guards WebSockets")
        origin = None
        for name, value in scope.get("headers", []):
            if name == b"origin":
                try:
                    origin = urlparse(value.decode("latin1"))
                except (UnicodeDecodeError, ValueError):
                    origin = urlparse("invalid://")
        trusted = origin is None or self.validate_origin(origin)
        if not trusted:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if not query.get("token"):
                return await WebsocketDenier()(scope, receive, send)
        return await self.application({**scope, "ws_origin_trusted": trusted}, receive, send)


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
