"""The two WebSocket endpoints, as thin raw-ASGI shells.

``/ws/v1/sessions/{id}/stream`` (producer) and ``/ws/v1/sessions/{id}/live``
(viewer). They authenticate at connect (a single-use ``?token=`` or the
logged-in user when the Origin is trusted), then hand the connection to
``ProducerStream`` / ``ViewerStream``. No Channels consumer dispatch: one
plain ``receive()`` loop, so an audio frame costs no thread hop.

The connection is accepted before authentication so the client always gets
an ``Error`` message and a documented close code instead of a bare HTTP 403.
"""

from __future__ import annotations

import re
import uuid
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

import structlog
from django.conf import settings

from transcription.connect import producer_connect, viewer_connect
from transcription.engine_feed import EngineOpener, default_engine_opener
from transcription.live_state import get_live_store
from transcription.relay import get_relay
from transcription.stream import ProducerStream
from transcription.stream_registry import new_owner_id
from transcription.viewer import ViewerStream
from transcription.wire import Close, StreamError, WsSocket
from voiceai.client_ip import client_ip
from voiceai.db import db_async
from voiceai.errors import DomainError
from voiceai.logging import get_logger
from voiceai.ops import drain
from voiceai.ops.metrics import WS_CONNECTIONS

log = get_logger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _bind_log_context(scope) -> None:
    """Every log line of this connection (and of the tasks it starts)
    carries request_id and session_id; clinic_id is added once authorized.
    Each connection runs in its own task, so the binding is its own."""
    incoming = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"), "")
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        request_id=incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex,
        session_id=str(scope.get("url_route", {}).get("kwargs", {}).get("session_id", "")),
    )


def _query(scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(raw).items()}


def _cookie(scope, name: str) -> str | None:
    for header, value in scope.get("headers", []):
        if header == b"cookie":
            cookies = SimpleCookie()
            try:
                cookies.load(value.decode("latin-1"))
            except CookieError:
                return None
            if name in cookies:
                return cookies[name].value
    return None


def _credentials(scope) -> dict[str, str | None]:
    """What identifies the caller, for the connect's one database call."""
    # The cookie counts only when the Origin was checked (routing.py): a page
    # on another site must not ride on the clinician's login.
    web_session_key = _cookie(scope, settings.SESSION_COOKIE_NAME) if scope.get("ws_origin_trusted") else None
    return {
        "token": _query(scope).get("token"),
        "web_session_key": web_session_key,
        "session_id": str(scope.get("url_route", {}).get("kwargs", {}).get("session_id", "")),
        "client_ip": client_ip(scope),
    }


class _RawWebSocketApp:
    """``as_asgi()`` for URLRouter, without Channels' consumer machinery."""

    kind = "unknown"  # voiceai_ws_connections label

    @classmethod
    def as_asgi(cls):
        async def app(scope, receive, send):
            await cls()(scope, receive, send)

        return app

    async def __call__(self, scope, receive, send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        _bind_log_context(scope)
        ws = WsSocket(send)
        await ws.accept()
        connections = WS_CONNECTIONS.labels(kind=self.kind)
        connections.inc()
        try:
            if drain.is_draining():
                # Refused before the token is consumed: connect again (elsewhere).
                raise StreamError(
                    Close.GOING_AWAY, "server_draining", "The server is restarting; connect again.", retryable=True
                )
            await self.handle(scope, receive, ws)
        except StreamError as exc:
            await ws.fail(exc)
        except DomainError as exc:  # the error map: each declares its close code
            await ws.fail(StreamError.from_domain(exc))
        except Exception:
            log.exception("websocket_failed", path=scope.get("path", ""))
            await ws.fail(StreamError(Close.INTERNAL, "internal_error", "Internal error.", retryable=True))
        finally:
            connections.dec()

    async def handle(self, scope, receive, ws: WsSocket) -> None:
        raise NotImplementedError


_COUNT = re.compile(r"^[0-9]{1,9}$")


def _count_param(query: dict[str, str], name: str) -> int | None:
    """A non-negative integer query parameter; absent: None."""
    raw = query.get(name)
    if raw is None:
        return None
    if not _COUNT.match(raw):
        raise StreamError(Close.PROTOCOL, "bad_query", f"{name} must be a non-negative integer.")
    return int(raw)


class ProducerConsumer(_RawWebSocketApp):
    kind = "producer"
    # How producers open their engine (tests wrap it to count or fail opens).
    engine_opener: EngineOpener = staticmethod(default_engine_opener)

    async def handle(self, scope, receive, ws: WsSocket) -> None:
        query = _query(scope)
        # ``finals_received``: how many finals the client has received over
        # all its connections; the stored ones after them are re-sent after
        # Begin. Checked before the token is consumed: a client bug costs no token.
        finals_received = _count_param(query, "finals_received")
        live, owner = get_live_store(), new_owner_id()
        # Who, the lease and slot, the stored length, live + audit: one call.
        connected = await db_async(producer_connect)(
            **_credentials(scope),
            live=live,
            owner=owner,
            takeover=query.get("takeover") in ("1", "true"),
            finals_received=finals_received,
        )
        structlog.contextvars.bind_contextvars(clinic_id=str(connected.auth.session.clinic_id))
        stream = ProducerStream(
            ws=ws,
            auth=connected.auth,
            live=live,
            relay=get_relay(),
            owner=owner,
            engine_opener=type(self).engine_opener,
        )
        await stream.start(connected)
        await stream.run(receive)


class ViewerConsumer(_RawWebSocketApp):
    kind = "viewer"

    async def handle(self, scope, receive, ws: WsSocket) -> None:
        # ``after_seq``: the last event seq this viewer received (a resume).
        after_seq = _count_param(_query(scope), "after_seq")
        connected = await db_async(viewer_connect)(**_credentials(scope), resuming=after_seq is not None)
        structlog.contextvars.bind_contextvars(clinic_id=str(connected.auth.session.clinic_id))
        viewer = ViewerStream(ws=ws, connected=connected, relay=get_relay(), live=get_live_store(), after_seq=after_seq)
        await viewer.run(receive)
