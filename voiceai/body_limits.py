"""Request body limits on the raw ASGI stream, before Django reads a byte.

Django's ASGI handler reads the whole body into a spooled temporary file
before any middleware, view or authentication runs: three unauthenticated
``Content-Length: 5000000000`` requests filled 1.5 GB of the temp directory
and held it until the client hung up. This wrapper decides from the headers
alone, per path, and answers 413 in the API's error shape without reading
the body. Chunked bodies (no ``Content-Length``) are counted as they arrive
and cut off at the same limit; small ones are then handed to Django with a
``Content-Length`` so DRF parses them instead of silently seeing no body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths that take file uploads, with their own limit (multipart framing included).
UPLOAD_PATHS = frozenset({"/api/v1/transcriptions/"})
#: Multipart framing around an uploaded file: boundaries, part headers, small fields.
MULTIPART_OVERHEAD = 64 * 1024


def body_limit_for(path: str) -> int:
    """Largest body accepted on ``path``, in bytes."""
    if path in UPLOAD_PATHS:
        return settings.BATCH_UPLOAD_MAX_BYTES + MULTIPART_OVERHEAD
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _error(status: int, code: str, message: str, details: dict[str, Any]) -> tuple[int, bytes]:
    body = {"error": {"code": code, "message": message, "details": details}}
    return status, json.dumps(body).encode()


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                # The unread body makes the connection useless for another request.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _too_large(path: str, limit: int) -> tuple[int, bytes]:
    if path in UPLOAD_PATHS:
        return _error(
            413,
            "upload_too_large",
            "The upload is larger than BATCH_UPLOAD_MAX_BYTES.",
            {"max_bytes": settings.BATCH_UPLOAD_MAX_BYTES},
        )
    return _error(413, "request_too_large", "The request body is too large.", {"max_bytes": limit})


class RequestBodyLimit:
    """ASGI wrapper for the HTTP app (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = body_limit_for(path)
        length_header: bytes | None = None
        chunked = False
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                length_header = value
            elif name == b"transfer-encoding":
                chunked = True
        if length_header is not None:
            if not length_header.isdigit():
                await _respond(send, *_error(400, "malformed_request", "The Content-Length header is malformed.", {}))
                return
            if int(length_header) > limit:
                await _respond(send, *_too_large(path, limit))
                return
            await self.app(scope, receive, send)
            return
        if not chunked:
            await self.app(scope, receive, send)  # HTTP/1.1: no length, no chunking, no body
            return
        if limit > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            # Uploads are too large to collect in memory first, and Django's
            # multipart parser needs the length: ask for it.
            await _respond(
                send,
                *_error(411, "length_required", "Send uploads with a Content-Length header, not chunked.", {}),
            )
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _respond(send, *_too_large(path, limit))
                return
            if not message.get("more_body", False):
                break
        await self.app(_with_length(scope, len(body)), _replay(bytes(body), receive), send)


def _with_length(scope: Scope, length: int) -> Scope:
    headers = [(n, v) for n, v in scope.get("headers", []) if n != b"transfer-encoding"]
    headers.append((b"content-length", str(length).encode()))
    return {**scope, "headers": headers}


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then http.disconnect, when the client leaves

    return replay
