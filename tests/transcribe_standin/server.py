"""A local stand-in for Amazon Transcribe Streaming that speaks the real
wire protocol: HTTP/2 over TLS (ALPN ``h2``), ``POST /stream-transcription``,
a body of AWS event-stream messages in both directions.

It "recognises" audio deterministically so tests can prove no audio was lost
or replayed twice: the audio is cut into windows of ``window_ms`` (aligned to
the start of each upstream stream); a window's word is ``w<N>`` where N is the
window's first PCM16 sample; an all-zero window is silence (no word, and it
closes the pending result). Every ``words_per_final`` windows close one
result (partials before that, one per window). Tests feed chunks whose
samples all carry the chunk's index, so the final texts of a session must
spell ``w1 w2 w3 ...`` exactly once.

Scenarios are queued per request (``script``) or pinned per region
(``region_scenarios``); the region comes from the SigV4 credential scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import struct
import threading
import uuid
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from amazon_transcribe.eventstream import EventStreamBuffer, EventStreamMessageSerializer

_serializer = EventStreamMessageSerializer()


@dataclass
class Scenario:
    # Answer the request itself with this HTTP error (status, x-amzn-errortype).
    start_error: tuple[int, str] | None = None
    # After this many audio bytes: raise ``fail_exception`` in-stream, or
    # drop the TCP connection when ``fail_exception`` is "drop".
    fail_after_bytes: int | None = None
    fail_exception: str = "LimitExceededException"
    # Slow server: delay the response headers and every result.
    headers_delay: float = 0.0
    result_delay: float = 0.0


@dataclass
class RecordedRequest:
    region: str
    path: str
    headers: dict[str, str]
    scenario: Scenario
    audio: bytearray = field(default_factory=bytearray)
    ended_by_client: bool = False
    results_sent: int = 0


class TranscribeStandin:
    """Run with ``start()`` / ``stop()``; the server lives in its own thread
    with its own event loop, so the code under test can block or not."""

    def __init__(self, cert_file: str, key_file: str, *, window_ms: int = 100, words_per_final: int = 5) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.window_ms = window_ms
        self.words_per_final = words_per_final
        self.script: list[Scenario] = []
        self.region_scenarios: dict[str, Scenario] = {}
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._lock = threading.Lock()

    # --- control from the test thread -----------------------------------------
    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert_file, self.key_file)
            ctx.set_alpn_protocols(["h2"])
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ctx))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.wait(pending, timeout=5))
            self._loop.close()

        self._thread = threading.Thread(target=run, name="transcribe-standin", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("stand-in did not start")

    def stop(self) -> None:
        if not self._loop:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        if self._thread:
            self._thread.join(10)

    def received_audio(self) -> bytes:
        with self._lock:
            return b"".join(bytes(r.audio) for r in self.requests)

    def regions_hit(self) -> list[str]:
        with self._lock:
            return [r.region for r in self.requests]

    def _next_scenario(self, region: str) -> Scenario:
        with self._lock:
            if region in self.region_scenarios:
                return self.region_scenarios[region]
            if self.script:
                return self.script.pop(0)
        return Scenario()

    # --- protocol -----------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        streams: dict[int, _StreamState] = {}
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    break
                for event in events:
                    await self._on_event(conn, writer, streams, event)
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # dropped by the client, or the stand-in is shutting down
        finally:
            for state in streams.values():
                if state.task:
                    state.task.cancel()
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _on_event(self, conn, writer, streams: dict[int, _StreamState], event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = dict(event.headers)
            region = _region_of(headers.get("authorization", ""))
            scenario = self._next_scenario(region)
            record = RecordedRequest(region=region, path=headers.get(":path", ""), headers=headers, scenario=scenario)
            with self._lock:
                self.requests.append(record)
            state = _StreamState(self, conn, writer, event.stream_id, record)
            streams[event.stream_id] = state
            state.task = asyncio.ensure_future(state.respond_headers())
        elif isinstance(event, h2.events.DataReceived):
            # Flow control: acknowledge at once or the client stalls.
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            state = streams.get(event.stream_id)
            if state:
                await state.on_data(event.data)
        elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            state = streams.get(event.stream_id)
            if state:
                await state.on_client_end()


class _StreamState:
    def __init__(self, server: TranscribeStandin, conn, writer, stream_id: int, record: RecordedRequest) -> None:
        self.server = server
        self.conn = conn
        self.writer = writer
        self.stream_id = stream_id
        self.record = record
        self.buffer = EventStreamBuffer()
        self.headers_sent = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.closed = False
        self.window_bytes = 0
        self.words: list[str] = []
        self.words_start_ms = 0
        self.position_ms = 0
        self.result_id = str(uuid.uuid4())
        self.pending = bytearray()
        self.send_lock = asyncio.Lock()

    def _flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    async def respond_headers(self) -> None:
        scenario = self.record.scenario
        if scenario.headers_delay:
            await asyncio.sleep(scenario.headers_delay)
        request_headers = self.record.headers
        rate = int(request_headers.get("x-amzn-transcribe-sample-rate", "16000"))
        self.window_bytes = rate * 2 * self.server.window_ms // 1000
        if scenario.start_error:
            status, error_type = scenario.start_error
            body = json.dumps({"Message": f"stand-in {error_type}"}).encode()
            self.conn.send_headers(
                self.stream_id,
                [
                    (":status", str(status)),
                    ("x-amzn-errortype", f"{error_type}:"),
                    ("content-type", "application/x-amz-json-1.1"),
                    ("content-length", str(len(body))),
                ],
            )
            self.conn.send_data(self.stream_id, body, end_stream=True)
            self.closed = True
            self._flush()
            self.headers_sent.set()
            return
        echoed = [(k, v) for k, v in request_headers.items() if k.startswith("x-amzn-transcribe-")]
        self.conn.send_headers(
            self.stream_id,
            [
                (":status", "200"),
                ("content-type", "application/vnd.amazon.eventstream"),
                ("x-amzn-request-id", str(uuid.uuid4())),
                ("x-amzn-transcribe-session-id", str(uuid.uuid4())),
                *echoed,
            ],
        )
        self._flush()
        self.headers_sent.set()

    async def on_data(self, data: bytes) -> None:
        if self.closed:
            return
        await self.headers_sent.wait()
        if self.closed:
            return
        self.buffer.add_data(data)
        for outer in self.buffer:
            if not outer.payload:  # the empty signed message ends the audio
                await self._finish()
                return
            inner_buffer = EventStreamBuffer()
            inner_buffer.add_data(outer.payload)
            for inner in inner_buffer:
                if inner.headers.get(":event-type") == "AudioEvent":
                    await self._on_audio(inner.payload)
                if self.closed:
                    return

    async def _on_audio(self, audio: bytes) -> None:
        # Window by window, so a failure scripted at N bytes happens at N
        # bytes however the client chunked its audio events.
        for start in range(0, len(audio), self.window_bytes):
            await self._on_piece(audio[start : start + self.window_bytes])
            if self.closed:
                return

    async def _on_piece(self, audio: bytes) -> None:
        scenario = self.record.scenario
        self.record.audio.extend(audio)
        if scenario.fail_after_bytes is not None and len(self.record.audio) >= scenario.fail_after_bytes:
            if scenario.fail_exception == "drop":
                self.closed = True
                self.writer.transport.abort()
                return
            await self._send_message(
                {
                    ":message-type": "exception",
                    ":exception-type": scenario.fail_exception,
                    ":content-type": "application/json",
                },
                json.dumps({"Message": f"stand-in {scenario.fail_exception}"}).encode(),
                end=True,
            )
            return
        self.pending.extend(audio)
        while len(self.pending) >= self.window_bytes:
            window = bytes(self.pending[: self.window_bytes])
            del self.pending[: self.window_bytes]
            if not any(window):  # silence ends an utterance and has no words
                if self.words:
                    await self._send_result(is_partial=False)
                self.position_ms += self.server.window_ms
                continue
            if not self.words:
                self.words_start_ms = self.position_ms
            (sample,) = struct.unpack_from("<h", window)
            self.words.append(f"w{sample}")
            self.position_ms += self.server.window_ms
            final = len(self.words) >= self.server.words_per_final
            await self._send_result(is_partial=not final)

    async def _send_result(self, *, is_partial: bool) -> None:
        if self.record.scenario.result_delay:
            await asyncio.sleep(self.record.scenario.result_delay)
        items = [
            {
                "StartTime": (self.words_start_ms + i * self.server.window_ms) / 1000,
                "EndTime": (self.words_start_ms + (i + 1) * self.server.window_ms) / 1000,
                "Type": "pronunciation",
                "Content": word,
                "Confidence": 0.9,
                "Speaker": "0",
            }
            for i, word in enumerate(self.words)
        ]
        body = {
            "Transcript": {
                "Results": [
                    {
                        "ResultId": self.result_id,
                        "StartTime": self.words_start_ms / 1000,
                        "EndTime": self.position_ms / 1000,
                        "IsPartial": is_partial,
                        "Alternatives": [{"Transcript": " ".join(self.words), "Items": items}],
                    }
                ]
            }
        }
        await self._send_message(
            {":message-type": "event", ":event-type": "TranscriptEvent", ":content-type": "application/json"},
            json.dumps(body).encode(),
        )
        self.record.results_sent += 1
        if not is_partial:
            self.words = []
            self.result_id = str(uuid.uuid4())

    async def _finish(self) -> None:
        self.record.ended_by_client = True
        if self.words:
            await self._send_result(is_partial=False)
        await self._send_message(None, b"", end=True)

    async def on_client_end(self) -> None:
        if not self.closed and self.headers_sent.is_set() and not self.record.ended_by_client:
            await self._finish()

    async def _send_message(self, headers: dict | None, payload: bytes, *, end: bool = False) -> None:
        async with self.send_lock:
            if self.closed:
                return
            try:
                if headers is not None:
                    self.conn.send_data(self.stream_id, _serializer.serialize(headers, payload))
                if end:
                    self.conn.end_stream(self.stream_id)
                    self.closed = True
                self._flush()
            except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
                self.closed = True


def _region_of(authorization: str) -> str:
    # "AWS4-HMAC-SHA256 Credential=AKID/20260101/ap-northeast-1/transcribe/aws4_request, ..."
    marker = "Credential="
    if marker not in authorization:
        return ""
    scope = authorization.split(marker, 1)[1].split(",", 1)[0].split("/")
    return scope[2] if len(scope) > 2 else ""
