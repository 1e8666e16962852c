"""Amazon Transcribe Streaming behind the engine interface.

The ``amazon-transcribe`` SDK (0.6.4, pinned: it is an early-alpha SDK) stays
inside this module: callers see ``EngineStream`` and ``EngineError`` only.
One ``AwsTranscribeStream`` is one upstream HTTP/2 request; keep-alive
silence, rollover before the 4 h limit and retry with replay live in
``transcription.resilient``, which works for any engine.

What the SDK does not do, and what we do about it:
- No flush: Transcribe has no "finalize now" call, so ``finalize`` here is
  a no-op and ``native_finalize`` is False; the resilient wrapper finalizes by
  ending the upstream stream and opening a new one (replaying unfinished audio).
- A dropped connection ends the SDK's result iterator as if the stream had
  finished; we tell the two apart by whether we ended the audio ourselves.
- Transcribe Medical, PII redaction, language identification are not offered
  by this SDK version (see README, "AWS").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from amazon_transcribe import exceptions as aws_exc
from amazon_transcribe.auth import CredentialResolver, StaticCredentialResolver
from amazon_transcribe.client import TranscribeStreamingClient
from amazon_transcribe.endpoints import StaticEndpointResolver
from amazon_transcribe.model import TranscriptEvent as AwsTranscriptEvent
from awscrt import io as crt_io
from awscrt.exceptions import AwsCrtError
from django.conf import settings

from transcription.engines.base import (
    END_OF_EVENTS,
    Engine,
    EngineError,
    EngineStream,
    StreamConfig,
    TranscriptEvent,
    events_from_queue,
)
from voiceai.logging import get_logger

logger = get_logger(__name__)

# The SDK's documented maximum audio event size.
MAX_CHUNK_BYTES = 32 * 1024
# Transcribe's hard limit is 4 h per stream; roll over a few minutes early so
# an in-flight utterance can still finish on the old stream.
MAX_STREAM_SECONDS = 4 * 60 * 60 - 5 * 60
MAX_SILENCE_SECONDS = 15.0

_END = END_OF_EVENTS

# Vendor error → (our code, retryable). Throttling and 5xx can succeed on a
# new stream; a bad request or a session-id conflict will fail again.
_ERRORS: dict[type[Exception], tuple[str, bool]] = {
    aws_exc.LimitExceededException: ("aws_limit_exceeded", True),
    aws_exc.ServiceUnavailableException: ("aws_service_unavailable", True),
    aws_exc.InternalFailureException: ("aws_internal_failure", True),
    aws_exc.BadRequestException: ("aws_bad_request", False),
    aws_exc.ConflictException: ("aws_conflict", False),
    aws_exc.SerializationException: ("aws_serialization", False),
    aws_exc.CredentialsException: ("aws_credentials", False),
    aws_exc.ValidationException: ("aws_invalid_request", False),
    aws_exc.HTTPException: ("aws_connection", True),
}


def translate_error(exc: BaseException) -> EngineError:
    """Any exception from the SDK or awscrt → EngineError with ``retryable``
    set. Only the vendor's error type and message are kept (no audio, no
    text ever appears in them)."""
    if isinstance(exc, EngineError):
        return exc
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    for exc_type, (code, retryable) in _ERRORS.items():
        if isinstance(exc, exc_type):
            return EngineError(f"{type(exc).__name__}: {message}", code=code, retryable=retryable)
    if isinstance(exc, aws_exc.UnknownServiceException):
        retryable = exc.status_code == 429 or exc.status_code >= 500
        return EngineError(f"{exc.error_code}: {message}", code="aws_service_error", retryable=retryable)
    if isinstance(exc, AwsCrtError | OSError | asyncio.TimeoutError):
        # Connection refused/reset, TLS failure, timeouts: a new connection may work.
        return EngineError(f"{type(exc).__name__}: {message}", code="aws_connection", retryable=True)
    return EngineError(f"{type(exc).__name__}: {message}", code="aws_error", retryable=False)


def _ms(seconds: float | None) -> int:
    return round((seconds or 0.0) * 1000)


class AwsTranscribeStream(EngineStream):
    # Transcribe cannot flush without ending the stream (see module doc).
    native_finalize = False

    def __init__(self, sdk_stream: Any, config: StreamConfig, region: str) -> None:
        self.region = region
        self._sdk = sdk_stream
        self._config = config
        self._audio: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._out: asyncio.Queue[Any] = asyncio.Queue()
        self._revisions: dict[str, int] = {}
        self._end_requested = False
        self._closed = False
        self._sender = asyncio.ensure_future(self._send_loop())
        self._reader = asyncio.ensure_future(self._read_loop())

    def send_audio(self, chunk: bytes) -> None:
        if self._end_requested or self._closed or not chunk:
            return
        for start in range(0, len(chunk), MAX_CHUNK_BYTES):
            self._audio.put_nowait(bytes(chunk[start : start + MAX_CHUNK_BYTES]))

    async def finalize(self) -> None:
        return None

    async def end(self) -> None:
        if self._end_requested or self._closed:
            return
        self._end_requested = True
        self._audio.put_nowait(None)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._sender

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        async for event in events_from_queue(self._out):
            yield event

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sender.cancel()
        if not self._end_requested:
            # Ends the HTTP/2 request so the upstream slot is released now,
            # not when Transcribe notices 15 s of silence.
            self._end_requested = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sdk.input_stream.end_stream(), 2)
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(self._sender, self._reader, return_exceptions=True)
        self._out.put_nowait(_END)

    async def _send_loop(self) -> None:
        try:
            while True:
                chunk = await self._audio.get()
                if chunk is None:
                    await self._sdk.input_stream.end_stream()
                    return
                await self._sdk.input_stream.send_audio_event(audio_chunk=chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._out.put_nowait(translate_error(exc))

    async def _read_loop(self) -> None:
        try:
            async for event in self._sdk.output_stream:
                if isinstance(event, AwsTranscriptEvent):
                    for result in event.transcript.results:
                        mapped = self._map(result)
                        if mapped is not None:
                            self._out.put_nowait(mapped)
            if not self._end_requested:
                raise EngineError(
                    "Transcribe closed the stream before the audio ended", code="aws_connection_closed", retryable=True
                )
            await self._check_completed()
            self._out.put_nowait(_END)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = translate_error(exc)
            logger.info("aws_stream_failed", session_id=self._config.session_id, code=error.code)
            self._out.put_nowait(error)

    async def _check_completed(self) -> None:
        """The SDK ends its result iterator the same way for a clean end and
        a dropped connection; the HTTP/2 stream's completion tells them
        apart (it fails with an awscrt error when the connection dropped)."""
        raw = getattr(self._sdk.output_stream, "_raw_stream", None)
        crt_stream = getattr(raw, "_stream", None)
        if crt_stream is None:
            return
        try:
            await asyncio.wait_for(asyncio.wrap_future(crt_stream.completion_future), 5)
        except Exception as exc:
            raise EngineError(
                f"Transcribe connection lost: {type(exc).__name__}", code="aws_connection_closed", retryable=True
            ) from None

    def _map(self, result: Any) -> TranscriptEvent | None:
        """One Transcribe ``Result`` → our event. ResultIds are unique only
        within one upstream stream, so the stream's session offset prefixes
        them; successive partials of one result become revisions 0, 1, ..."""
        if not result.alternatives:
            return None
        alternative = result.alternatives[0]
        offset = self._config.start_offset_ms
        segment_id = f"aws-{offset}-{result.result_id}"
        revision = self._revisions.get(segment_id, -1) + 1
        is_final = not result.is_partial
        if is_final:
            self._revisions.pop(segment_id, None)
        else:
            self._revisions[segment_id] = revision
        items = alternative.items or []
        speaker = next((f"spk_{item.speaker}" for item in items if item.speaker not in (None, "")), "")
        confidences = [item.confidence for item in items if item.confidence is not None]
        return TranscriptEvent(
            segment_id=segment_id,
            revision=revision,
            is_final=is_final,
            start_ms=offset + _ms(result.start_time),
            end_ms=offset + _ms(result.end_time),
            text=alternative.transcript or "",
            speaker=speaker,
            confidence=(sum(confidences) / len(confidences)) if confidences and is_final else None,
        )


class AwsTranscribeEngine(Engine):
    """Opens one upstream stream per call in the region the caller picked
    (``config.extra["region"]``, set by the engine quota) or the first of
    AWS_TRANSCRIBE_REGIONS. ``endpoint_url``/``ca_file``/``credentials`` are
    for the local stand-in and proxies; in production the SDK's default
    endpoint, trust store and credential chain apply."""

    name = "aws"
    languages = frozenset({"ja-JP", "en-US"})
    # Upstream streams count against ENGINE_STREAMS_PER_REGION (the pipeline
    # opens them through transcription.engine_quota).
    uses_engine_quota = True

    def __init__(
        self,
        *,
        regions: list[str] | None = None,
        endpoint_url: str | None = None,
        ca_file: str | None = None,
        credentials: tuple[str, str] | None = None,
        open_timeout: float = 10.0,
        max_stream_seconds: float = MAX_STREAM_SECONDS,
        max_silence_seconds: float = MAX_SILENCE_SECONDS,
    ) -> None:
        self.regions = list(regions or settings.AWS_TRANSCRIBE_REGIONS)
        self.endpoint_url = endpoint_url if endpoint_url is not None else settings.AWS_TRANSCRIBE_ENDPOINT_URL
        self.ca_file = ca_file
        self.credentials = credentials
        self.open_timeout = open_timeout
        self.max_stream_seconds = max_stream_seconds
        self.max_silence_seconds = max_silence_seconds
        self._clients: dict[str, TranscribeStreamingClient] = {}

    def _client(self, region: str) -> TranscribeStreamingClient:
        client = self._clients.get(region)
        if client is None:
            resolver = StaticEndpointResolver(self.endpoint_url) if self.endpoint_url else None
            creds: CredentialResolver | None = StaticCredentialResolver(*self.credentials) if self.credentials else None
            client = TranscribeStreamingClient(region=region, endpoint_resolver=resolver, credential_resolver=creds)
            if self.ca_file:
                # The SDK builds its TLS context with the system trust store
                # and exposes no option; swapping it keeps SSL_CERT_FILE out
                # of the process environment.
                options = crt_io.TlsContextOptions()
                options.override_default_trust_store_from_path(ca_filepath=self.ca_file)
                client._session_manager._tls_ctx = crt_io.ClientTlsContext(options)
            self._clients[region] = client
        return client

    async def open_stream(self, config: StreamConfig) -> AwsTranscribeStream:
        region = config.extra.get("region") or self.regions[0]
        try:
            client = self._client(region)
            sdk_stream = await asyncio.wait_for(
                client.start_stream_transcription(
                    language_code=config.language,
                    media_sample_rate_hz=config.sample_rate,
                    media_encoding="pcm",
                    vocabulary_name=config.vocabulary_name or None,
                    show_speaker_label=True if config.show_speaker_labels else None,
                    enable_partial_results_stabilization=True,
                    partial_results_stability=config.extra.get("partial_results_stability", "high"),
                ),
                self.open_timeout,
            )
        except Exception as exc:
            error = translate_error(exc)
            logger.info("aws_stream_open_failed", session_id=config.session_id, code=error.code)
            raise error from None
        return AwsTranscribeStream(sdk_stream, config, region)
