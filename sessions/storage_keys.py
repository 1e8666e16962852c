"""Where a session's objects live in storage: ``{clinic_id}/{session_id}/``.

One place for the layout so the pipeline, erasure, export and the S3/KMS
policy all agree.

Audio parts are named by the byte range of the session's PCM stream they
hold: ``parts/{start:015d}-{end:015d}.pcm``. A listing alone then tells how
much audio is durable (storage is authoritative for resume), writing the
same range twice overwrites instead of duplicating, and parts written by two
owners around a takeover may overlap without harm: they hold the same
client bytes, and the reader takes each byte once.
"""

import re
from typing import Protocol


class _SessionLike(Protocol):
    id: object
    clinic_id: object


_PART_RE = re.compile(r"^(\d{15})-(\d{15})\.pcm$")


def session_prefix(session: _SessionLike) -> str:
    return f"{session.clinic_id}/{session.id}/"


def audio_parts_prefix(session: _SessionLike) -> str:
    return f"{session_prefix(session)}parts/"


def audio_part_key(session: _SessionLike, start: int, end: int) -> str:
    # Zero-padded so a lexical listing is in stream order.
    return f"{audio_parts_prefix(session)}{start:015d}-{end:015d}.pcm"


def audio_part_range(name: str) -> tuple[int, int] | None:
    """(start, end) byte offsets of a part's file name, None for other files."""
    match = _PART_RE.match(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    start, end = int(match.group(1)), int(match.group(2))
    return (start, end) if end > start else None


def audio_wav_key(session: _SessionLike) -> str:
    return f"{session_prefix(session)}audio.wav"


def transcript_json_key(session: _SessionLike) -> str:
    return f"{session_prefix(session)}transcript.json"
