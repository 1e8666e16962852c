"""Reference client: stream a WAV file to VoiceAI and print the live transcript.

    python -m examples.reference_client FILE.wav --url http://127.0.0.1:8000 --api-key KEY \\
        [--speed N] [--external-ref R] [--language L]

What it shows an integrator, in order:

1. ``POST /api/v1/sessions/`` (header ``Authorization: Api-Key <key>``) creates a
   session and returns ``stream_url`` and a single-use ``stream_token``.
2. The producer socket ``<stream_url>?token=<token>`` takes binary frames of
   raw PCM16LE mono (100 ms here) and small JSON control messages; the server
   answers with ``Begin``, ``Transcript`` (partials are revised under the same
   ``segment_id``; finals are sent once), ``Ack``, ``Warning``/``Error`` and,
   after ``CloseStream``, ``Metadata``.
3. Audio the server has not acknowledged (``Ack.audio_bytes_durable``) stays
   in a local buffer. When the connection drops, the client gets a fresh token
   (``POST /api/v1/sessions/{id}/stream-token/``), reconnects with
   ``takeover=1`` and resends from ``Begin.resume_from_byte``: nothing is lost
   and nothing is stored twice. A microphone keeps capturing meanwhile; this
   client's "microphone" is the file, read at real-time pace. It also passes
   ``finals_received`` (finals received so far, over all connections): the
   server re-sends the finals it stored after the connection was gone.
4. At the end, ``GET /api/v1/sessions/{id}/`` returns ``audio_sha256``: the
   sha256 of the stored WAV (a canonical 44-byte header plus exactly the PCM
   the client sent). The client checks it against its own audio.

Exit status: 0 when the audio was verified, 1 on errors, 2 on a sha256 mismatch.
Only the standard library and ``websockets`` are used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import sys
import time
import urllib.error
import urllib.request
import wave
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

FRAME_MS = 100
MAX_RECONNECTS = 8  # consecutive failed connections before giving up
# Close codes after which reconnecting and resuming can succeed.
RESUMABLE_CLOSE_CODES = {1001, 1006, 1011, 1012, 4409}


class ClientError(Exception):
    """A failure the client can't recover from (bad key, session not found, ...)."""


class StreamEnded(Exception):
    """The server closed the producer socket before the upload was complete."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


# --- audio -------------------------------------------------------------------


def read_wav(path: str) -> tuple[int, bytes]:
    """(sample_rate, PCM16LE mono bytes) of a WAV file."""
    with wave.open(path, "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2 or wav.getcomptype() != "NONE":
            raise ClientError("the WAV file must be 16-bit PCM mono")
        return wav.getframerate(), wav.readframes(wav.getnframes())


def wav_sha256(pcm: bytes, sample_rate: int) -> str:
    """sha256 of the WAV the server stores: the standard 44-byte header
    (what ``wave`` writes for PCM16 mono) followed by the PCM."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return hashlib.sha256(out.getvalue()).hexdigest()


class UnackedAudio:
    """Captured audio the server has not acknowledged yet, by session byte
    offset. ``ack`` drops what is durable; a reconnect resends from there."""

    def __init__(self) -> None:
        self.start = 0  # session offset of buffer[0]
        self._data = bytearray()
        self.complete = False  # the source has no more audio
        self.grew = asyncio.Event()

    @property
    def end(self) -> int:
        return self.start + len(self._data)

    def append(self, chunk: bytes) -> None:
        self._data += chunk
        self.grew.set()

    def finish(self) -> None:
        self.complete = True
        self.grew.set()

    def ack(self, durable: int) -> None:
        if durable > self.start:
            del self._data[: durable - self.start]
            self.start = durable

    def read(self, offset: int, size: int) -> bytes:
        if offset < self.start:
            raise ClientError(f"audio at byte {offset} was already acknowledged and dropped")
        return bytes(self._data[offset - self.start : offset - self.start + size])


async def capture(pcm: bytes, buffer: UnackedAudio, *, frame_bytes: int, speed: float) -> None:
    """Play the file into ``buffer`` like a microphone: one frame every
    FRAME_MS / speed, whether or not a connection is up."""
    began = time.monotonic()
    for n, offset in enumerate(range(0, len(pcm), frame_bytes)):
        delay = began + n * FRAME_MS / 1000 / speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        buffer.append(pcm[offset : offset + frame_bytes])
    buffer.finish()


# --- REST --------------------------------------------------------------------


class Api:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Api-Key {self._api_key}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - URL given by the user
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", "replace")
            if exc.code >= 500:  # the server is restarting or overloaded: worth retrying
                raise ConnectionError(f"{method} {path} answered {exc.code}") from None
            raise ClientError(f"{method} {path} answered {exc.code}: {detail}") from None

    async def acall(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        # urllib blocks; keep the event loop (and the capture) running.
        return await asyncio.to_thread(self.call, method, path, body)


# --- the producer socket ------------------------------------------------------


@dataclass
class StreamResult:
    session_id: str
    finals: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    reconnects: int = 0
    resumed_from: list[int] = field(default_factory=list)


class Printer:
    """Partials overwrite the current line on a terminal; finals stay."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._partial_shown = False

    def partial(self, text: str) -> None:
        if self.tty:
            self.out.write(f"\r\x1b[K… {text}")
            self._partial_shown = True
        else:
            self.out.write(f"… {text}\n")
        self.out.flush()

    def line(self, text: str) -> None:
        if self._partial_shown:
            self.out.write("\r\x1b[K")
            self._partial_shown = False
        self.out.write(text + "\n")
        self.out.flush()


def _clock(ms: int) -> str:
    return f"{ms // 60000:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


class Producer:
    """One session's upload: reconnects and resumes until the server has
    everything and has said Metadata."""

    def __init__(
        self, api: Api, session: dict[str, Any], buffer: UnackedAudio, printer: Printer, *, frame_bytes: int
    ) -> None:
        self.api = api
        self.session_id = str(session["id"])
        self.stream_url = session["stream_url"]
        self.token = session["stream_token"]
        self.buffer = buffer
        self.printer = printer
        self.frame_bytes = frame_bytes
        self.result = StreamResult(session_id=self.session_id)
        self._final_ids: set[str] = set()
        self._last_error: dict[str, Any] | None = None
        self._begun = False  # the current connection got its Begin

    async def run(self) -> StreamResult:
        failures = 0  # connections in a row that failed before Begin
        first = True
        while True:
            self._begun = False
            try:
                if not first:
                    # Tokens are single-use: every connection needs a fresh one.
                    path = f"/api/v1/sessions/{self.session_id}/stream-token/"
                    self.token = (await self.api.acall("POST", path))["stream_token"]
                if await self._connection(takeover=not first):
                    return self.result
            except (OSError, TimeoutError, InvalidStatus) as exc:
                self.printer.line(f"! connection failed: {exc}")
            except (ConnectionClosed, StreamEnded) as exc:
                code = exc.code if isinstance(exc, StreamEnded) else exc.rcvd.code if exc.rcvd else 1006
                if self._sealed_while_away():
                    return self.result
                # The server's Error says whether retrying can help; without one, the close code does.
                error = self._last_error
                if not (error["retryable"] if error else code in RESUMABLE_CLOSE_CODES):
                    reason = f"{error['code']}: {error['message']}" if error else "no reason given"
                    raise ClientError(f"the server closed the stream ({code}) - {reason}") from None
                self.printer.line(f"! connection lost (close {code}); resuming")
            failures = 1 if self._begun else failures + 1
            first = False
            if failures > MAX_RECONNECTS:
                raise ClientError("could not reconnect; giving up")
            await asyncio.sleep(min(0.2 * 2**failures, 5.0))
            self.result.reconnects += 1

    def _sealed_while_away(self) -> bool:
        # CloseStream went out and the server sealed the session, but the
        # connection dropped before Metadata reached us: the upload is complete.
        error = self._last_error or {}
        return self.buffer.complete and self.result.reconnects > 0 and error.get("code") == "session_ended"

    async def _connection(self, *, takeover: bool) -> bool:
        """One connection. True when the stream finished (Metadata received)."""
        self._last_error = None
        query = {"token": self.token}
        if takeover:
            # Finals the server stored after the last connection was gone
            # come back right after Begin: say how many we have.
            query.update(takeover="1", finals_received=str(len(self._final_ids)))
        # No permessage-deflate: PCM barely compresses and deflate costs CPU on both ends.
        url = f"{self.stream_url}?{urlencode(query)}"
        async with connect(url, open_timeout=10, max_size=2**20, compression=None) as ws:
            begin = json.loads(await ws.recv())
            if begin.get("type") != "Begin":
                self._last_error = begin if begin.get("type") == "Error" else None
                await ws.wait_closed()
                raise StreamEnded(ws.close_code or 1006)
            self._begun = True
            resume = int(begin["resume_from_byte"])
            self.buffer.ack(resume)
            if takeover:
                self.result.resumed_from.append(resume)
                self.printer.line(f"! resumed at byte {resume}")
            sender = asyncio.create_task(self._send_audio(ws, resume))
            try:
                return await self._receive(ws)
            finally:
                sender.cancel()
                # A send on a dropped connection fails too; the receive side reports it.
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await sender

    async def _send_audio(self, ws: ClientConnection, offset: int) -> None:
        while True:
            if offset < self.buffer.end:
                frame = self.buffer.read(offset, self.frame_bytes)
                await ws.send(frame)
                offset += len(frame)
            elif self.buffer.complete:
                await ws.send(json.dumps({"type": "CloseStream"}))
                return
            else:
                self.buffer.grew.clear()
                await self.buffer.grew.wait()

    async def _receive(self, ws: ClientConnection) -> bool:
        async for raw in ws:
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "Transcript":
                self._on_transcript(message)
            elif kind == "Ack":
                self.buffer.ack(int(message["audio_bytes_durable"]))
            elif kind == "Metadata":
                self.result.metadata = message
            elif kind == "Warning":
                self.printer.line(f"! warning {message.get('code')}: {message.get('message')}")
            elif kind == "Error":
                self._last_error = message
                self.printer.line(f"! error {message.get('code')}: {message.get('message')}")
        # The server closed the socket: done only after Metadata and a clean close.
        if self.result.metadata is not None and ws.close_code == 1000:
            return True
        raise StreamEnded(ws.close_code or 1006)

    def _on_transcript(self, message: dict[str, Any]) -> None:
        if not message["is_final"]:
            self.printer.partial(message["text"])
            return
        if message["segment_id"] in self._final_ids:  # the server promises once; be safe anyway
            return
        self._final_ids.add(message["segment_id"])
        self.result.finals.append(message)
        self.printer.line(f"[{_clock(message['start_ms'])}-{_clock(message['end_ms'])}] {message['text']}")


# --- main --------------------------------------------------------------------


async def transcribe_file(
    path: str,
    *,
    url: str,
    api_key: str,
    speed: float = 1.0,
    external_ref: str = "",
    language: str | None = None,
    consent: str | None = None,
    out: TextIO = sys.stdout,
) -> tuple[StreamResult, bool]:
    """Stream ``path`` as a new session; returns the result and whether the
    server's audio sha256 matched ours."""
    sample_rate, pcm = read_wav(path)
    api = Api(url, api_key)
    body: dict[str, Any] = {"sample_rate": sample_rate}
    if external_ref:
        body["external_ref"] = external_ref
    if language:
        body["language"] = language
    if consent:
        body["consent_method"] = consent  # the clinic may require it before it takes audio (close 4428)
    session = await api.acall("POST", "/api/v1/sessions/", body)
    printer = Printer(out)
    printer.line(f"session {session['id']} ({len(pcm) * 1000 // (sample_rate * 2)} ms of audio at {sample_rate} Hz)")

    frame_bytes = sample_rate * 2 * FRAME_MS // 1000
    buffer = UnackedAudio()
    capturing = asyncio.create_task(capture(pcm, buffer, frame_bytes=frame_bytes, speed=speed))
    try:
        result = await Producer(api, session, buffer, printer, frame_bytes=frame_bytes).run()
    finally:
        capturing.cancel()

    stored = await api.acall("GET", f"/api/v1/sessions/{session['id']}/")
    expected = wav_sha256(pcm, sample_rate)
    matched = stored.get("audio_sha256") == expected
    meta = result.metadata or {}
    printer.line(
        f"done: {meta.get('segments')} segments, {meta.get('audio_ms')} ms stored, {result.reconnects} reconnects"
    )
    if matched:
        printer.line(f"audio verified: sha256 {expected}")
    else:
        printer.line(f"AUDIO MISMATCH: server {stored.get('audio_sha256')!r}, expected {expected}")
    return result, matched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.reference_client", description=__doc__.split("\n")[0])
    parser.add_argument("file", help="16-bit PCM mono WAV")
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--api-key", required=True, help="a clinic API key (Authorization: Api-Key ...)")
    parser.add_argument("--speed", type=float, default=1.0, help="1 = real time (default), 4 = four times faster")
    parser.add_argument("--external-ref", default="", help="your opaque id for the consultation")
    parser.add_argument("--language", default=None, help="e.g. en-US or ja-JP (default: the clinic's)")
    parser.add_argument(
        "--consent",
        choices=["verbal", "written"],
        default=None,
        help="record the patient's consent with the session (clinics that require it refuse audio without)",
    )
    args = parser.parse_args(argv)
    if args.speed <= 0:
        parser.error("--speed must be positive")
    try:
        _, matched = asyncio.run(
            transcribe_file(
                args.file,
                url=args.url,
                api_key=args.api_key,
                speed=args.speed,
                external_ref=args.external_ref,
                language=args.language,
                consent=args.consent,
            )
        )
    except (ClientError, OSError, wave.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0 if matched else 2


if __name__ == "__main__":
    sys.exit(main())
