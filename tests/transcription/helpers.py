"""Shared helpers for the realtime tests: sessions, tokens, audio, sockets."""

from __future__ import annotations

import json
import random

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from clinics.access import Principal
from clinics.principals import stream_token_issue
from sessions.models import ConsultationSession
from transcription.routing import WebSocketOriginGuard, websocket_urlpatterns
from voiceai.db import db_async

RATE = 16000
FRAME = 3200  # 100 ms at 16 kHz


def make_session(principal: Principal, **fields) -> ConsultationSession:
    fields.setdefault("language", "en-US")
    fields.setdefault("engine", "fake")
    return ConsultationSession.objects.create(clinic=principal.clinic, **fields)


def token_for(principal: Principal, session: ConsultationSession) -> str:
    return stream_token_issue(principal=principal, session=session).token


# db_async closes the thread's connection afterwards (the test database
# must be droppable at the end).
atoken_for = db_async(token_for)
adb = db_async


def pcm(nbytes: int, seed: int = 0) -> bytes:
    """Deterministic, non-silent PCM16 (distinct per seed, so any gap or
    duplicate changes the bytes)."""
    return random.Random(seed).randbytes(nbytes)


def app():
    return WebSocketOriginGuard(URLRouter(websocket_urlpatterns))  # as voiceai/asgi.py


def communicator(session_id, kind: str = "stream", *, token: str | None = None, query: str = "", headers=None):
    qs = "&".join(part for part in (f"token={token}" if token else "", query) if part)
    path = f"/ws/v1/sessions/{session_id}/{kind}" + (f"?{qs}" if qs else "")
    return WebsocketCommunicator(app(), path, headers=headers or [])


async def receive_until(comm: WebsocketCommunicator, kind: str, *, seconds: float = 5.0) -> tuple[dict, list[dict]]:
    """Read JSON messages until one of type ``kind``; returns it and all read."""
    seen = []
    while True:
        message = json.loads(await comm.receive_from(timeout=seconds))
        seen.append(message)
        if message["type"] == kind:
            return message, seen


async def expect_close(comm: WebsocketCommunicator, *, seconds: float = 5.0) -> tuple[int, list[dict]]:
    """Read until the server closes; returns (close code, JSON messages read)."""
    seen = []
    while True:
        output = await comm.receive_output(timeout=seconds)
        if output["type"] == "websocket.close":
            return output.get("code", 1000), seen
        if output["type"] == "websocket.send" and output.get("text"):
            seen.append(json.loads(output["text"]))
