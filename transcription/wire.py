"""The raw ASGI WebSocket shell the consumers use, and the protocol's
error and close codes.

Consumers run one plain ``receive()`` loop instead of Channels' consumer
dispatch, which hops to a thread (``close_old_connections``) and builds
tasks for every message — unaffordable at 10 audio frames per second per
stream (docs/architecture.md, "Measured facts"). Sending is a single ``send`` call.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from voiceai.errors import Close, DomainError
from voiceai.ops.metrics import WS_CLOSES

if TYPE_CHECKING:
    from sessions.models import TranscriptSegment
    from transcription.engines.base import TranscriptEvent

PROTOCOL_VERSION = 1
CONTROL_TYPES = frozenset({"KeepAlive", "Finalize", "CloseStream"})
MAX_TEXT_BYTES = 4096


class StreamError(Exception):
    """Ends a connection: an Error message with ``code``, then ``close_code``."""

    def __init__(
        self, close_code: int, code: str, message: str, *, retryable: bool = False, ends_session: bool = False
    ) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.code = code
        self.message = message
        self.retryable = retryable
        # The engine refused the session for good (e.g. a language it can't
        # do): reconnecting would repeat it, so the session is failed and
        # its slot released instead of being left live.
        self.ends_session = ends_session

    @classmethod
    def from_domain(cls, exc: DomainError) -> StreamError:
        """The error map's socket side: the close code the domain error declares."""
        return cls(exc.close_code, exc.code, exc.message, retryable=exc.retryable)


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


class WsSocket:
    """One accepted WebSocket. Sends after close are dropped, so a task
    racing the close never raises into the event loop."""

    def __init__(self, send) -> None:
        self._send = send
        self.accepted = False
        self.closed = False
        self.close_code: int | None = None

    async def accept(self) -> None:
        await self._send({"type": "websocket.accept"})
        self.accepted = True

    async def send_json(self, payload: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            await self._send({"type": "websocket.send", "text": _dumps(payload)})
        except Exception:
            # The peer is gone (uvicorn raises ClientDisconnected / OSError);
            # the receive loop sees websocket.disconnect next.
            self.closed = True

    async def close(self, code: int = Close.NORMAL) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        WS_CLOSES.labels(code=str(code)).inc()
        # Already gone: nothing left to close.
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code})

    async def fail(self, error: StreamError) -> None:
        """The documented way out on bad input: Error, then the close code."""
        await self.send_json(
            {"type": "Error", "code": error.code, "message": error.message, "retryable": error.retryable}
        )
        await self.close(error.close_code)


def parse_control(text: str | None, allowed: frozenset[str] = CONTROL_TYPES) -> str:
    """The ``type`` of a client's JSON control message, or a 4400 StreamError."""
    if text is None or len(text) > MAX_TEXT_BYTES:
        raise StreamError(Close.PROTOCOL, "message_too_large", "Control messages are small JSON objects.")
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: a few thousand nested brackets fit in the size limit.
        raise StreamError(
            Close.PROTOCOL, "bad_json", "Text frames must be JSON; audio goes in binary frames."
        ) from None
    kind = payload.get("type") if isinstance(payload, dict) else None
    # A list or object as "type" is unhashable: test the type before ``in``.
    if not isinstance(kind, str) or kind not in allowed:
        raise StreamError(Close.PROTOCOL, "unknown_type", "Unknown message type.")
    return kind


def segment_payload(s: TranscriptSegment | TranscriptEvent) -> dict:
    """The ``Transcript`` message of a stored segment or an engine event."""
    return {
        "type": "Transcript",
        "segment_id": s.segment_id,
        "revision": s.revision,
        "is_final": bool(s.is_final),
        "start_ms": s.start_ms,
        "end_ms": s.end_ms,
        "text": s.text,
        "speaker": s.speaker,
        "confidence": s.confidence,
    }
