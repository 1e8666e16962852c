"""Whether a producer (recording connection) holds a session right now, and
how many concurrent-stream slots a clinic holds.

The answer lives in the realtime layer's live state (``transcription``), which
``sessions`` must not import: ``transcription`` registers its check here when
its app is ready. Erasure and the abandoned-session reaper ask it.
"""

from collections.abc import Callable

ProducerCheck = Callable[..., bool]
StreamsCount = Callable[..., int]

_check: ProducerCheck | None = None
_streams: StreamsCount | None = None


def producer_check_register(check: ProducerCheck) -> None:
    global _check
    _check = check


def producer_attached(*, clinic_id: object, session_id: object) -> bool:
    """Raises when the state can't be read (Redis down, or no realtime layer
    installed): the caller must never read "unknown" as "nobody"."""
    if _check is None:
        raise RuntimeError("no live-state check registered (is the transcription app installed?)")
    return _check(clinic_id=clinic_id, session_id=session_id)


def streams_count_register(count: StreamsCount) -> None:
    global _streams
    _streams = count


def streams_in_use(*, clinic_id: object) -> int:
    """The clinic's concurrent-stream slots held now: what its quota counts.
    Raises when the state can't be read."""
    if _streams is None:
        raise RuntimeError("no live-state count registered (is the transcription app installed?)")
    return _streams(clinic_id=clinic_id)
