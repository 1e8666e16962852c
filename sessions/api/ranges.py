"""HTTP Range (RFC 9110 §14) for the audio download: one byte range;
several ranges are answered with the whole body, which the RFC allows."""

import re

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


# Any position with more digits is past the end of every file; Python
# refuses to convert strings of over 4,300 digits at all (a 500 before).
_MAX_DIGITS = 18
_PAST_ANY_END = 10**_MAX_DIGITS


class RangeNotSatisfiable(Exception):
    pass


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else _PAST_ANY_END


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for a satisfiable single range, None to send
    the whole body, RangeNotSatisfiable (416) when no byte is in range."""
    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None  # malformed or multi-range: ignore the header
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable()
        return max(0, size - suffix), size - 1
    start = _position(first)
    if start >= size:
        raise RangeNotSatisfiable()
    end = size - 1 if last == "" else min(_position(last), size - 1)
    if end < start:
        return None  # "bytes=5-2" is invalid syntax: ignore
    return start, end
