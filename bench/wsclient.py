"""A minimal WebSocket client on asyncio protocols, built for load
generation rather than generality.

Why not ``websockets`` here: a load generator must cost less than the
server it measures. ``websockets`` masks every outgoing frame (an XOR over
the payload in Python/C per send), runs a task per connection and a
keepalive per connection; at 10,000 frames/s that is a visible share of a
core. This client

- sends a frame built once (header + fixed mask + pre-masked payload): one
  ``transport.write`` of the same ``bytes`` object per audio frame;
- parses server frames in ``data_received`` without tasks or futures;
- hands text payloads to a callback as ``bytes`` so the caller can find the
  few fields it needs without a full JSON decode;
- answers pings (servers close connections that don't) and nothing else.

It speaks RFC 6455 without extensions (no permessage-deflate is offered).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# One fixed mask key for every frame. RFC 6455 wants it unpredictable to
# protect proxies from cache poisoning; between a benchmark and a server on
# 127.0.0.1 there is no proxy, and servers don't (and can't) check it.
_MASK = b"\x37\xfa\x21\x3d"


def _mask(payload: bytes, key: bytes = _MASK) -> bytes:
    if not payload:
        return b""
    # XOR by whole integers: fast enough for precomputation and control frames.
    reps = (len(payload) + 3) // 4
    mask_int = int.from_bytes((key * reps)[: len(payload)], "big")
    return (int.from_bytes(payload, "big") ^ mask_int).to_bytes(len(payload), "big")


def build_frame(opcode: int, payload: bytes) -> bytes:
    """A complete, masked, final client frame."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + _MASK + _mask(payload)


def close_frame(code: int = 1000) -> bytes:
    return build_frame(OP_CLOSE, struct.pack("!H", code))


class WsClientProtocol(asyncio.Protocol):
    """One client connection. ``on_text(payload_bytes, now)`` is called for
    every text message; ``on_close(code)`` once when the connection ends."""

    __slots__ = (
        "_buf",
        "_frag_opcode",
        "_fragments",
        "_handshake_done",
        "_key",
        "_loop",
        "close_code",
        "closed",
        "on_close",
        "on_text",
        "opened",
        "request",
        "transport",
    )

    def __init__(
        self,
        request: bytes,
        key: bytes,
        on_text: Callable[[bytes, float], None],
        on_close: Callable[[int | None], None] | None = None,
    ) -> None:
        self.request = request
        self._key = key
        self.on_text = on_text
        self.on_close = on_close
        self._loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = self._loop.create_future()
        self.closed = False
        self.close_code: int | None = None
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._handshake_done = False
        self._fragments: list[bytes] = []
        self._frag_opcode = 0

    # --- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._handshake_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 16384:
                    self._fail(ConnectionError("oversize handshake response"))
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            status_line = head.split(b"\r\n", 1)[0]
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or parts[1] != b"101":
                self._fail(HandshakeRejected(status_line.decode("latin-1", "replace")))
                return
            self._handshake_done = True
            if not self.opened.done():
                self.opened.set_result(None)
        now = self._loop.time()
        while True:
            n = len(buf)
            if n < 2:
                return
            b0 = buf[0]
            length = buf[1] & 0x7F
            pos = 2
            if length == 126:
                if n < 4:
                    return
                length = (buf[2] << 8) | buf[3]
                pos = 4
            elif length == 127:
                if n < 10:
                    return
                length = int.from_bytes(buf[2:10], "big")
                pos = 10
            if buf[1] & 0x80:  # servers must not mask; tolerate it anyway
                pos += 4
            end = pos + length
            if n < end:
                return
            payload = bytes(buf[pos:end])
            del buf[:end]
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode in (OP_TEXT, OP_BINARY):
                if fin:
                    if opcode == OP_TEXT:
                        self.on_text(payload, now)
                else:
                    self._frag_opcode = opcode
                    self._fragments = [payload]
            elif opcode == OP_CONT:
                self._fragments.append(payload)
                if fin:
                    whole = b"".join(self._fragments)
                    self._fragments = []
                    if self._frag_opcode == OP_TEXT:
                        self.on_text(whole, now)
            elif opcode == OP_PING:
                self.transport.write(build_frame(OP_PONG, payload))  # type: ignore[union-attr]
            elif opcode == OP_CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                if not self.closed:
                    # Echo the close and drop the connection; no lingering.
                    self.transport.write(close_frame(self.close_code if self.close_code < 5000 else 1000))  # type: ignore[union-attr]
                    self.transport.close()  # type: ignore[union-attr]
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during handshake"))
        if not self.closed:
            self.closed = True
            if self.on_close is not None:
                self.on_close(self.close_code)

    # --- helpers -------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def send_raw(self, frame: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(frame)

    def close(self, code: int = 1000) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(close_frame(code))
            self.transport.close()


class HandshakeRejected(ConnectionError):
    """The server answered the upgrade with something other than 101."""


def upgrade_request(host: str, port: int, path: str, *, origin: str | None = None) -> tuple[bytes, bytes]:
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


async def ws_connect(
    host: str,
    port: int,
    path: str,
    on_text: Callable[[bytes, float], None],
    on_close: Callable[[int | None], None] | None = None,
    *,
    origin: str | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - one bound for connect and handshake
) -> WsClientProtocol:
    loop = asyncio.get_running_loop()
    request, key = upgrade_request(host, port, path, origin=origin)
    _, proto = await asyncio.wait_for(
        loop.create_connection(lambda: WsClientProtocol(request, key, on_text, on_close), host, port),
        timeout,
    )
    await asyncio.wait_for(proto.opened, timeout)
    return proto
