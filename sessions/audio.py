"""PCM16 and WAV helpers shared by the pipeline, the tests and clients.

The stored WAV is canonical: a 44-byte RIFF header (PCM, mono, 16-bit, the
session's sample rate) followed by exactly the PCM bytes the client sent, so
a client can compute the expected sha256 from its own audio with
``wav_header``.
"""

import io
import struct
import wave

BYTES_PER_SAMPLE = 2  # PCM16 mono
WAV_HEADER_BYTES = 44  # the canonical header wav_header writes


def bytes_per_ms(sample_rate: int) -> float:
    return sample_rate * BYTES_PER_SAMPLE / 1000.0


def pcm_ms(nbytes: int, sample_rate: int) -> int:
    """Whole milliseconds of audio in ``nbytes`` of PCM16 mono."""
    return nbytes * 1000 // (sample_rate * BYTES_PER_SAMPLE)


def ms_to_bytes(ms: int, sample_rate: int) -> int:
    """Byte offset of ``ms``, aligned down to a whole sample."""
    n = ms * sample_rate * BYTES_PER_SAMPLE // 1000
    return n - (n % BYTES_PER_SAMPLE)


def wav_header(data_bytes: int, sample_rate: int) -> bytes:
    """The canonical 44-byte header of a PCM16 mono WAV holding ``data_bytes``."""
    byte_rate = sample_rate * BYTES_PER_SAMPLE
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        sample_rate,
        byte_rate,
        BYTES_PER_SAMPLE,
        16,
        b"data",
        data_bytes,
    )


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    return wav_header(len(pcm), sample_rate) + pcm


def wav_read_pcm(data: bytes) -> tuple[int, bytes]:
    """(sample_rate, PCM) of a PCM16 mono WAV file's bytes; ValueError otherwise."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != BYTES_PER_SAMPLE or wav.getcomptype() != "NONE":
                raise ValueError("expected 16-bit PCM mono")
            return wav.getframerate(), wav.readframes(wav.getnframes())
    except wave.Error as exc:
        raise ValueError(str(exc)) from None
