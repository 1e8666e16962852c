"""One viewer connection: Begin, the finals so far, then the session's
transcript events as they happen (through the session relay, from whichever
process holds the producer), and End when the session ends.

Every relayed event carries the session's sequence number (``seq``); Begin
says where this connection starts. A viewer that reconnects with
``?after_seq=N`` gets exactly the events after N — no finals reloaded, none
missed, none twice — as long as the relay still holds them; otherwise (a
gap: the log was trimmed or Redis lost it) it gets the stored finals again,
as on a first connect, and Begin says ``"resumed": false``.
"""

from __future__ import annotations

import asyncio
import contextlib

from sessions.events import SESSION_ENDED
from sessions.models import CLOSED_STATUSES
from sessions.services import viewer_start
from transcription.connect import ViewerConnect
from transcription.live_state import LiveStore
from transcription.relay import RelayGap, SessionRelay, Subscription, control_log
from transcription.stream_registry import STATS, new_owner_id
from transcription.wire import PROTOCOL_VERSION, Close, StreamError, WsSocket, parse_control, segment_payload
from voiceai.db import db_async
from voiceai.logging import get_logger

log = get_logger(__name__)


class ViewerStream:
    def __init__(
        self,
        *,
        ws: WsSocket,
        connected: ViewerConnect,
        relay: SessionRelay,
        live: LiveStore,
        after_seq: int | None = None,
    ) -> None:
        self.ws = ws
        self.connected = connected
        self.session = connected.auth.session
        self.relay = relay
        self.live = live
        self.after_seq = after_seq
        self.viewer_id = new_owner_id()
        # Finals sent from the database load, until the relay passes them.
        self._sent_finals: set[str] = set()
        self._events: Subscription | None = None

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
            if self._events is not None:
                await self._events.aclose()

    async def _run(self, receive) -> None:
        clinic_id, session_id = self.session.clinic_id, self.session.pk
        connected = self.connected
        finals = connected.finals
        resumed = False
        if self.after_seq is not None:
            try:
                self._events = await self.relay.subscribe(clinic_id, session_id, after_seq=self.after_seq)
                resumed = True
            except RelayGap:
                # The events after after_seq are gone: start over from the
                # stored finals, as on a first connect.
                log.info("viewer_resume_gap", session_id=str(session_id))
                reload = await db_async(viewer_start)(principal=connected.auth.principal, session_id=session_id)
                finals = reload.finals
        if self._events is None:
            try:
                # From where the connect read the relay, before the finals
                # were loaded: nothing falls between the two.
                self._events = await self.relay.subscribe(
                    clinic_id, session_id, after_seq=connected.relay_seq, epoch=connected.relay_epoch
                )
            except RelayGap:
                self._events = await self.relay.subscribe(clinic_id, session_id)
        # Present before Begin, so the producer starts sending partials to
        # the relay (finals always go).
        await self._touch()
        self.relay.publish_nowait(clinic_id, control_log(session_id), {"type": "viewer.joined"})
        await self.ws.send_json(
            {
                "type": "Begin",
                "session_id": str(session_id),
                "protocol": PROTOCOL_VERSION,
                "sample_rate": connected.sample_rate,
                "status": connected.status,
                "seq": self._events.start_seq,
                "resumed": resumed,
            }
        )
        if not resumed:
            for final in map(segment_payload, finals):
                self._sent_finals.add(final["segment_id"])
                await self.ws.send_json(final)
        if connected.status in CLOSED_STATUSES and not resumed:
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
            elif isinstance(exc, RelayGap):
                # This viewer fell behind or the relay lost events: it
                # reconnects with after_seq and is told where to resync.
                await self.ws.fail(
                    StreamError(Close.GOING_AWAY, "events_lost", "Live events were lost; reconnect.", retryable=True)
                )
            elif exc is not None:
                log.error("viewer_failed", session_id=str(session_id), error=type(exc).__name__)
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
        assert self._events is not None
        async for item in self._events:
            kind = item.event.get("type")
            if kind == "transcript":
                event = item.event.get("event") or {}
                if event.get("is_final") and self._sent_finals:
                    if event.get("segment_id") in self._sent_finals:
                        continue  # loaded from the database already
                    # Finals are published in the order they are stored: the
                    # first one the load did not hold is newer than all of
                    # it, and so is every later one.
                    self._sent_finals.clear()
                await self.ws.send_json({**event, "seq": item.seq})
            elif kind == SESSION_ENDED:
                await self._end(seq=item.seq)
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

    async def _end(self, seq: int | None = None) -> None:
        end = {"type": "End", "session_id": str(self.session.pk)}
        if seq is not None:
            end["seq"] = seq
        await self.ws.send_json(end)
        await self.ws.close(Close.NORMAL)
