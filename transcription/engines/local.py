"""Offline English recognition with pocketsphinx 5 (``TRANSCRIPTION_ENGINE=local``).

Why decoders live in child processes: pocketsphinx's Python binding holds the
GIL for the whole of every decoder call (``process_raw`` is not ``nogil``;
measured here: ``end_utt`` on an 8 s utterance held it for about 1 s). In a
thread, a decoder would stall the event loop, and with it every other
session of the server process. So each decoder is a long-lived worker
process that loads the model once (≈ 90 MB, ≈ 1.3 s) and serves one stream
at a time, then the next. The event loop only buffers audio; a small
dedicated thread pool (not the default executor, which Django's
``sync_to_async`` uses) does the blocking pipe round trip of one batch, and
those threads wait on I/O without the GIL.

The number of decoders is bounded process-wide by
``LOCAL_ENGINE_MAX_DECODERS``; a stream over the bound is refused at once
(``engine_busy``, retryable) instead of queueing behind others.

Segments follow pocketsphinx's voice-activity endpointer: an utterance
starts when speech starts and ends after ~0.3 s of silence, after 20 s of
speech without a pause, or on ``finalize``/``end``. Partials are the decoder's hypothesis after each
batch; the final is the hypothesis at the utterance's end. Segment ids are
``l-<start_ms>`` on the session clock (``StreamConfig.start_offset_ms``), so
they stay unique within a session across reconnects.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from transcription.engines.base import (
    END_OF_EVENTS,
    Engine,
    EngineError,
    EngineStream,
    StreamConfig,
    TranscriptEvent,
    events_from_queue,
)

logger = logging.getLogger(__name__)

SUPPORTED_LANGUAGES = frozenset({"en-US", "en"})
BATCH_MS = 400  # audio handed to the decoder per round trip: partial latency vs. overhead
MAX_EXCHANGE_MS = 1000  # a backlog is caught up in round trips of at most this, so partials still flow
MAX_BACKLOG_MS = 30_000  # undecoded audio beyond this means the machine can't keep up
CLOSE_WAIT_SECONDS = 5.0  # how long aclose waits for a batch in the decoder before killing it
_END = END_OF_EVENTS


_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class _DecoderProcess:
    """A worker process and our end of its socket. Used by one stream at a time.

    A plain subprocess rather than ``multiprocessing``: spawn and forkserver
    re-run the parent's ``__main__`` (pytest, uvicorn, manage.py scripts) in
    the child, and fork is unsafe in a process with threads."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
        code = f"from transcription.engines.local_worker import worker_main; worker_main({theirs.fileno()})"
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=_PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self.conn.poll(timeout) or self.conn.recv() != ("ready",):
            raise RuntimeError("decoder process did not start")

    def exchange(self, request: list[tuple[str, Any]]) -> list[tuple]:
        """Blocking round trip; runs in the pool's threads, never on the loop."""
        self.conn.send(request)
        status, payload = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"decoder failed: {payload}")
        return payload

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


class DecoderPool:
    """The process-wide bound on decoders, and the idle decoder processes
    kept warm for the next stream. Thread-safe (slots are returned from
    executor threads when a stream is abandoned mid-batch)."""

    def __init__(self, max_decoders: int) -> None:
        self.max_decoders = max_decoders
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=max_decoders, thread_name_prefix="local-asr")
        self._lock = threading.Lock()
        self._idle: list[_DecoderProcess] = []
        self._in_use = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    async def acquire(self) -> _DecoderProcess:
        with self._lock:
            if self._in_use >= self.max_decoders:
                raise EngineError(
                    f"all {self.max_decoders} local decoders are busy; try again later or use another engine",
                    code="engine_busy",
                    retryable=True,
                )
            self._in_use += 1
            decoder = self._idle.pop() if self._idle else None
        try:
            if decoder is None or not decoder.alive():
                loop = asyncio.get_running_loop()
                decoder = await loop.run_in_executor(self.executor, self._start_decoder)
        except BaseException as exc:
            self.release(None)
            if isinstance(exc, Exception):
                logger.error("local decoder process failed to start", extra={"error": type(exc).__name__})
                raise EngineError(
                    "the local decoder could not start", code="engine_unavailable", retryable=True
                ) from exc
            raise
        return decoder

    def release(self, decoder: _DecoderProcess | None, *, healthy: bool = True) -> None:
        with self._lock:
            self._in_use -= 1
            if decoder is not None and healthy and decoder.alive():
                self._idle.append(decoder)
                return
        if decoder is not None:
            decoder.kill()

    def shutdown(self) -> None:
        """Stop idle decoders (tests, process exit). Busy ones stop with their streams."""
        with self._lock:
            idle, self._idle = self._idle, []
        for decoder in idle:
            decoder.kill()

    @staticmethod
    def _start_decoder() -> _DecoderProcess:
        decoder = _DecoderProcess()
        try:
            decoder.wait_ready()
        except BaseException:
            decoder.kill()
            raise
        logger.info("local decoder process started", extra={"pid": decoder.process.pid})
        return decoder


_pool: DecoderPool | None = None
_pool_lock = threading.Lock()


def default_pool() -> DecoderPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            from django.conf import settings

            _pool = DecoderPool(settings.LOCAL_ENGINE_MAX_DECODERS)
        return _pool


@dataclass(slots=True)
class _Control:
    op: str  # "start" | "finalize" | "end"
    done: asyncio.Future


class LocalEngineStream(EngineStream):
    def __init__(self, config: StreamConfig, pool: DecoderPool, decoder: _DecoderProcess) -> None:
        self._config = config
        self._pool = pool
        self._decoder: _DecoderProcess | None = decoder
        self._bytes_per_ms = config.sample_rate * 2 / 1000
        self._batch_bytes = int(BATCH_MS * self._bytes_per_ms) // 2 * 2
        self._max_exchange_bytes = int(MAX_EXCHANGE_MS * self._bytes_per_ms)
        self._max_backlog_bytes = int(MAX_BACKLOG_MS * self._bytes_per_ms)
        self._pending = bytearray()  # audio received on the loop, not yet handed over
        self._requests: collections.deque[bytes | _Control] = collections.deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._out: asyncio.Queue[TranscriptEvent | EngineError | object] = asyncio.Queue()
        self._inflight: concurrent.futures.Future | None = None
        self._ended = False
        self._closed = False
        self._failed = False
        self._requests.append(_Control("start", asyncio.get_running_loop().create_future()))
        self._pump_task = asyncio.get_running_loop().create_task(self._pump(), name="local-asr-pump")

    # --- EngineStream ---

    def send_audio(self, chunk: bytes) -> None:
        if self._ended or self._closed or self._failed:
            return
        self._pending += chunk
        if len(self._pending) >= self._batch_bytes:
            self._flush_pending()
            self._wake.set()

    async def finalize(self) -> None:
        await self._control("finalize")

    async def end(self) -> None:
        if self._ended or self._closed:
            return
        await self._control("end")
        self._ended = True

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        async for event in events_from_queue(self._out):
            yield event

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pump_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._pump_task
        healthy = True
        inflight = self._inflight
        if inflight is not None and not inflight.done() and self._decoder is not None:
            # Let the batch in the decoder finish so the slot is free when we
            # return; a decoder that doesn't answer in time is killed instead.
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(inflight)), CLOSE_WAIT_SECONDS)
            except TimeoutError:
                healthy = False
            except Exception:  # noqa: S110 - the stream is being abandoned; the pump reported failures
                pass
        self._release(healthy=healthy)
        self._out.put_nowait(_END)

    # --- internals ---

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        self._requests.append(bytes(self._pending))
        self._queued_bytes += len(self._pending)
        self._pending.clear()
        if self._queued_bytes > self._max_backlog_bytes and not self._failed:
            # The decoder fell far behind real time: say so rather than drift further.
            self._fail(
                EngineError("the local decoder can't keep up with the audio", code="engine_overloaded", retryable=True)
            )

    async def _control(self, op: str) -> None:
        if self._closed or self._failed:
            return
        self._flush_pending()
        control = _Control(op, asyncio.get_running_loop().create_future())
        self._requests.append(control)
        self._wake.set()
        # Also stop waiting if the pump is gone (stream failed or closed).
        await asyncio.wait({control.done, self._pump_task}, return_when=asyncio.FIRST_COMPLETED)

    async def _pump(self) -> None:
        """Hands queued audio and controls to the decoder process, one round
        trip at a time, and queues the events it returns."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._requests:
                self._wake.clear()
                await self._wake.wait()
                continue
            request, controls = self._take_requests()
            assert self._decoder is not None
            self._inflight = self._pool.executor.submit(self._decoder.exchange, request)
            try:
                rows = await asyncio.wrap_future(self._inflight, loop=loop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "local decoder failed", extra={"session_id": self._config.session_id, "error": type(exc).__name__}
                )
                self._fail(EngineError("the local decoder failed", code="engine_failed", retryable=True))
                for control in controls:
                    if not control.done.done():
                        control.done.set_result(None)
                return
            self._inflight = None
            for row in rows:
                self._out.put_nowait(_event_from_row(row))
            for control in controls:
                if control.op == "end":
                    self._release()
                    self._out.put_nowait(_END)
                if not control.done.done():
                    control.done.set_result(None)
                if control.op == "end":
                    return

    def _take_requests(self) -> tuple[list[tuple[str, Any]], list[_Control]]:
        """What is queued up to and including the next control, as one round
        trip: audio chunks concatenated, at most about MAX_EXCHANGE_MS."""
        request: list[tuple[str, Any]] = []
        controls: list[_Control] = []
        audio = bytearray()
        while self._requests:
            if isinstance(self._requests[0], bytes) and len(audio) >= self._max_exchange_bytes:
                break
            item = self._requests.popleft()
            if isinstance(item, bytes):
                audio += item
                self._queued_bytes -= len(item)
                continue
            if audio:
                request.append(("audio", bytes(audio)))
                audio.clear()
            arg = (self._config.sample_rate, self._config.start_offset_ms) if item.op == "start" else None
            request.append((item.op, arg))
            controls.append(item)
            if item.op != "start":
                break
        if audio:
            request.append(("audio", bytes(audio)))
        return request, controls

    def _fail(self, error: EngineError) -> None:
        self._failed = True
        self._requests.clear()
        self._pending.clear()
        self._out.put_nowait(error)
        self._out.put_nowait(_END)
        self._release(healthy=error.code != "engine_failed")

    def _release(self, *, healthy: bool = True) -> None:
        decoder, self._decoder = self._decoder, None
        if decoder is None:
            return
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            # The worker is mid-batch: hand it back only when it has answered,
            # so the next stream's first request is not read as this reply.
            inflight.add_done_callback(lambda _f: self._pool.release(decoder, healthy=healthy))
        else:
            self._pool.release(decoder, healthy=healthy)


def _event_from_row(row: tuple) -> TranscriptEvent:
    segment_id, revision, is_final, start_ms, end_ms, text, confidence = row
    return TranscriptEvent(
        segment_id=segment_id,
        revision=revision,
        is_final=is_final,
        start_ms=start_ms,
        end_ms=end_ms,
        text=text,
        confidence=confidence,
    )


class LocalEngine(Engine):
    name = "local"
    languages = frozenset({"en-US"})

    def __init__(self, *, pool: DecoderPool | None = None) -> None:
        self._pool = pool

    async def open_stream(self, config: StreamConfig) -> LocalEngineStream:
        if config.language not in SUPPORTED_LANGUAGES:
            raise EngineError(
                f"the local engine recognises English (en-US) only, not {config.language!r}; "
                "Japanese and other languages need the aws engine",
                code="unsupported_language",
                retryable=False,
            )
        if not 8000 <= config.sample_rate <= 48000:
            raise EngineError(
                f"sample rate {config.sample_rate} Hz is not supported (8000-48000)",
                code="unsupported_sample_rate",
                retryable=False,
            )
        pool = self._pool or default_pool()
        decoder = await pool.acquire()
        return LocalEngineStream(config, pool, decoder)
