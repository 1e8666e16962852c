"""What one producer connection knows of its session's audio: where each
byte stands (received, stored, acknowledged) and the bytes not yet stored.

Offsets are session-relative bytes of PCM16 mono. Everything before
``durable`` is in storage; ``received`` is where the next frame starts;
``acked`` is ``received`` as of the last Ack. A new connection starts all
three at the stored length (the client resends from ``resume_from``).

``accept`` is the audio hot path: length checks and a bytearray append, no
await, no I/O. A bad frame raises a 4400 StreamError and changes nothing.
"""

from __future__ import annotations

from sessions.audio import bytes_per_ms, ms_to_bytes
from transcription.wire import Close, StreamError

MIN_FRAME_MS = 20
MAX_FRAME_MS = 1000
# Received audio is flushed inline (reading pauses: TCP backpressure) once
# this much is unacknowledged, so with frames of at most 1 s no more than
# 4 s of audio is ever unacknowledged (the promise is 5 s).
INLINE_FLUSH_MS = 3000
DURATION_WARNING_SECONDS = 300  # clinicians hear of the session-length limit this early


class AudioLedger:
    __slots__ = (
        "_bytes_per_second",
        "_inline_flush_bytes",
        "_warn_bytes",
        "acked",
        "buffer",
        "durable",
        "limit_bytes",
        "max_frame",
        "min_frame",
        "received",
        "resume_from",
    )

    def __init__(self, *, sample_rate: int, start: int = 0, max_session_seconds: int = 0) -> None:
        bpm = bytes_per_ms(sample_rate)
        self.min_frame = int(MIN_FRAME_MS * bpm)
        self.max_frame = int(MAX_FRAME_MS * bpm)
        self._inline_flush_bytes = int(INLINE_FLUSH_MS * bpm)
        self._bytes_per_second = ms_to_bytes(1000, sample_rate)
        # The clinic's maximum session length as bytes of audio (0: none).
        self.limit_bytes = ms_to_bytes(max_session_seconds * 1000, sample_rate) if max_session_seconds else 0
        self._warn_bytes = ms_to_bytes(max(0, max_session_seconds - DURATION_WARNING_SECONDS) * 1000, sample_rate)
        self.buffer = bytearray()
        self.resume_from = self.durable = self.received = self.acked = start

    def start_at(self, offset: int) -> None:
        """The stored length, known once storage was read at connect."""
        self.resume_from = self.durable = self.received = self.acked = offset
        self.buffer.clear()

    # --- the hot path ---------------------------------------------------------------

    def accept(self, frame: bytes) -> None:
        n = len(frame)
        if n & 1:
            raise StreamError(Close.PROTOCOL, "odd_length_frame", "Audio frames hold whole 16-bit samples.")
        if n < self.min_frame:
            raise StreamError(Close.PROTOCOL, "frame_too_small", f"Audio frames hold at least {MIN_FRAME_MS} ms.")
        if n > self.max_frame:
            raise StreamError(Close.PROTOCOL, "frame_too_large", f"Audio frames hold at most {MAX_FRAME_MS} ms.")
        self.buffer += frame
        self.received += n

    @property
    def needs_inline_flush(self) -> bool:
        return len(self.buffer) >= self._inline_flush_bytes

    # --- storing and acknowledging -------------------------------------------------------

    def unstored(self) -> bytes:
        """A copy of the bytes not yet stored, [durable, received)."""
        return bytes(self.buffer)

    def stored(self, nbytes: int) -> None:
        """The first ``nbytes`` of the buffer are in storage now. Frames that
        arrived while they were written stay buffered after them."""
        del self.buffer[:nbytes]
        self.durable += nbytes

    @property
    def unacked(self) -> bool:
        return self.received != self.acked

    def mark_acked(self) -> None:
        self.acked = self.received

    def buffered_from(self, offset: int) -> bytes:
        """Buffered audio from session offset ``offset`` (at least ``durable``)."""
        return bytes(self.buffer[max(0, offset - self.durable) :])

    # --- the clinic's session-length limit --------------------------------------------------

    @property
    def near_limit(self) -> bool:
        return bool(self.limit_bytes) and self.received >= self._warn_bytes

    @property
    def over_limit(self) -> bool:
        return bool(self.limit_bytes) and self.received >= self.limit_bytes

    @property
    def seconds_left(self) -> int:
        return max(0, (self.limit_bytes - self.received) // self._bytes_per_second)
