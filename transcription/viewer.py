"""One viewer connection: Begin, the finals so far, then the session's
transcript events as they happen (through the channel layer, from whichever
process holds the producer), and End when the session ends."""

from __future__ import annotations

import asyncio
import contextlib

from sessions.events import SESSION_ENDED, session_group
from sessions.models import CLOSED_STATUSES
from sessions.services import viewer_start
from transcription.live_state import LiveStore
from transcription.socket_auth import StreamAuth
from transcription.stream_seams import STATS, live_group, new_owner_id
from transcription.wire import PROTOCOL_VERSION, Close, StreamError, WsSocket, parse_control, segment_payload
from voiceai.db import db_async
from voiceai.logging import get_logger

log = get_logger(__name__)


class ViewerStream:
    def __init__(self, *, ws: WsSocket, auth: StreamAuth, layer, live: LiveStore) -> None:
        self.ws = ws
        self.auth = auth
        self.session = auth.session
        self.layer = layer
        self.live = live
        self.viewer_id = new_owner_id()
        self._sent_finals: set[str] = set()
        self._channel: str | None = None
        self._groups = [
            session_group(self.session.clinic_id, self.session.pk),
            live_group(self.session.clinic_id, self.session.pk),
        ]

    async def run(self, receive) -> None:
        STATS.viewers_active += 1
        try:
            await self._run(receive)
        finally:
            STATS.viewers_active -= 1
            with contextlib.suppress(Exception):
                await self.live.viewer_leave(
                    clinic_id=self.session.clinic_id, session_id=self.session.pk, viewer=self.viewer_id
                )
            if self._channel is not None:
                for group in self._groups:
                    with contextlib.suppress(Exception):
                        await self.layer.group_discard(group, self._channel)

    async def _run(self, receive) -> None:
        # Join first, load second: events published while the finals load
        # wait in the channel and are de-duplicated by segment id.
        if self.layer is not None:
            self._channel = await self.layer.new_channel()
            for group in self._groups:
                await self.layer.group_add(group, self._channel)
            # Present before the finals load, so the producer starts sending
            # partials to the channel layer (finals always go there).
            await self._touch()
            await self.layer.group_send(self._groups[0], {"type": "viewer.joined"})
        start = await db_async(viewer_start)(principal=self.auth.principal, session_id=self.session.pk)
        await self.ws.send_json(
            {
                "type": "Begin",
                "session_id": str(self.session.pk),
                "protocol": PROTOCOL_VERSION,
                "sample_rate": start.sample_rate,
                "status": start.status,
            }
        )
        for final in map(segment_payload, start.finals):
            self._sent_finals.add(final["segment_id"])
            await self.ws.send_json(final)
        if start.status in CLOSED_STATUSES or self._channel is None:
            await self._end()
            return
        client = asyncio.ensure_future(self._client_loop(receive))
        events = asyncio.ensure_future(self._event_loop())
        presence = asyncio.ensure_future(self._presence_loop())
        done, pending = await asyncio.wait({client, events, presence}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            exc = task.exception()
            if isinstance(exc, StreamError):
                await self.ws.fail(exc)
            elif exc is not None:
                log.error("viewer_failed", session_id=str(self.session.pk), error=type(exc).__name__)
                await self.ws.fail(StreamError(Close.INTERNAL, "internal_error", "Internal error.", retryable=True))

    async def _client_loop(self, receive) -> None:
        """Viewers only send KeepAlive; anything else is a protocol error."""
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            if message.get("text") is None:
                raise StreamError(Close.PROTOCOL, "unexpected_binary", "Viewers do not send audio.")
            parse_control(message["text"], allowed=frozenset({"KeepAlive"}))

    async def _event_loop(self) -> None:
        while True:
            message = await self.layer.receive(self._channel)
            kind = message.get("type")
            if kind == "transcript":
                event = message.get("event") or {}
                if event.get("is_final"):
                    if event.get("segment_id") in self._sent_finals:
                        continue
                    self._sent_finals.add(event.get("segment_id"))
                await self.ws.send_json(event)
            elif kind == SESSION_ENDED:
                await self._end()
                return

    async def _touch(self) -> None:
        try:
            await self.live.viewer_touch(
                clinic_id=self.session.clinic_id, session_id=self.session.pk, viewer=self.viewer_id
            )
        except Exception:
            log.warning("viewer_presence_failed", session_id=str(self.session.pk))

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, LiveStore.lease_ms() / 3000))
            await self._touch()

    async def _end(self) -> None:
        await self.ws.send_json({"type": "End", "session_id": str(self.session.pk)})
        await self.ws.close(Close.NORMAL)
