"""The MCP server over streamable HTTP at ``/mcp``, in the project's ASGI
app (``voiceai/asgi.py``: behind ``RequestBodyLimit``, beside Django).

Authenticated like REST: ``Authorization: Api-Key <key>``; without one, or
with a bad one, 401 in the REST error shape before the MCP SDK sees the
request. The principal rides in the ASGI scope to the tools
(``agents.server``), which gate it (MCP on, key role, rate) on every call.

Stateless and JSON-only (no server-side MCP sessions, no SSE streams): any
process of the deployment answers any request, so the load balancer needs
no affinity and a restart loses nothing. The cost: on handshake-era
clients the ``initialize`` (and its client name) is not remembered across
requests, so tool calls' audit rows name the client "mcp" unless it sends
its name with each request (the 2026-07-28 protocol does).

The SDK's session manager needs a running task group, normally entered by
an ASGI lifespan; neither daphne (``make run``) nor Channels' router runs
one, so the first request starts it in a task of the server's event loop.
"""

import asyncio
import json

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from agents.server import SCOPE_PRINCIPAL, mcp_server
from clinics.access import Principal
from clinics.api.authentication import KEYWORD
from clinics.principals import principal_for_caller
from clinics.services import api_key_authenticate
from voiceai.body_limits import ASGIApp, Message, Receive, Scope, Send
from voiceai.client_ip import client_ip
from voiceai.db import db_async
from voiceai.errors import DomainError
from voiceai.logging import get_logger

log = get_logger(__name__)

PATH = "/mcp"


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return ""


async def _error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if status == 401:
        headers.append((b"www-authenticate", KEYWORD.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _principal_for(header: str, scope: Scope) -> Principal:
    """The caller's principal, as REST's ApiKeyAuthentication decides it."""
    scheme, _, raw = header.partition(" ")
    if not header or scheme.lower() != KEYWORD.lower() or not raw.strip():
        raise _Refused(401, "not_authenticated", f"Authentication required: send Authorization: {KEYWORD} <key>.")
    key = api_key_authenticate(raw.strip())
    if key is None:
        raise _Refused(401, "authentication_failed", "The API key is invalid or revoked.")
    try:
        return principal_for_caller(api_key=key, client_ip=client_ip(scope))
    except DomainError as exc:  # a suspended clinic: 403 clinic_suspended, as in REST
        raise _Refused(exc.status, exc.code, exc.message) from None


def _host_allowed(scope: Scope) -> bool:
    """Django's ALLOWED_HOSTS, which the SDK's own DNS-rebinding check would
    otherwise duplicate with a list of its own."""
    domain, _port = split_domain_port(_header(scope, b"host"))
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


class McpEndpoint:
    """``/mcp``: authenticate, then hand over to the SDK's session manager."""

    def __init__(self) -> None:
        mcp_server.streamable_http_app(
            streamable_http_path=PATH,
            stateless_http=True,
            json_response=True,
            max_request_body_size=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            # Hosts are checked against ALLOWED_HOSTS above; browsers can't
            # send the Api-Key header cross-site without a preflight we refuse.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._manager: StreamableHTTPSessionManager = mcp_server.session_manager
        self._running: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def _ensure_running(self) -> bool:
        """Whether the session manager runs (started by the first request)."""
        if self._running is None:
            self._running = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._serve(self._running))
        await self._running.wait()
        return not self._task.done() if self._task is not None else False

    async def _serve(self, running: asyncio.Event) -> None:
        try:
            async with self._manager.run():
                running.set()
                await asyncio.Event().wait()  # for the life of the process
        except Exception as exc:
            log.error("mcp_http_stopped", error=type(exc).__name__)
        finally:
            running.set()  # nobody waits forever on a manager that will not run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _host_allowed(scope):
            await _error(send, 400, "bad_host", "The Host header is not allowed.")
            return
        try:
            principal = await db_async(_principal_for)(_header(scope, b"authorization"), scope)
        except _Refused as exc:
            await _error(send, exc.status, exc.code, exc.message)
            return
        if not await self._ensure_running():
            await _error(send, 503, "unavailable", "The MCP server is not running; try again.")
            return
        await self._manager.handle_request({**scope, SCOPE_PRINCIPAL: principal}, receive, _no_store(send))


def _no_store(send: Send) -> Send:
    """Every answer is one clinic's data: no browser or proxy may keep a
    copy (as REST's ``Cache-Control: private, no-store``)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers") or [] if k.lower() != b"cache-control"]
            message = {**message, "headers": [*headers, (b"cache-control", b"private, no-store")]}
        await send(message)

    return sending


def with_mcp(app: ASGIApp) -> ASGIApp:
    """``app`` with ``/mcp`` answered by the MCP server."""
    endpoint = McpEndpoint()

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope.get("type") == "http" and (path == PATH or path.startswith(PATH + "/")):
            await endpoint(scope, receive, send)
        else:
            await app(scope, receive, send)

    return route
