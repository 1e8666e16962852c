"""WebSocket routes and the Origin check in front of them."""

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
