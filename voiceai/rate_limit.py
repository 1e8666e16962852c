"""A fixed-window request counter per caller: Redis when REDIS_URL is set
(every process of the deployment shares the count), in-process otherwise
(``make run``: one process).

Fixed windows let a caller send up to twice the limit across a window's
edge; for bounding an assistant's reads that is close enough, and it costs
one INCR per call (plus an EXPIRE on the window's first).
"""

import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings

from voiceai.errors import Close, DomainError, Unavailable
from voiceai.logging import get_logger

log = get_logger(__name__)


class RateLimited(DomainError):
    status = 429
    close_code = Close.QUOTA
    code = "rate_limited"
    default_message = "Too many requests; slow down and try again shortly."
    retryable = True


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``limit`` calls per ``window_seconds`` for each key, under ``scope``."""

    scope: str
    limit: int
    window_seconds: int = 60


_local_lock = threading.Lock()
_local_counts: dict[tuple[str, str, int], int] = {}
_redis_clients: dict[str, redis.Redis] = {}


def _redis(url: str) -> redis.Redis:
    client = _redis_clients.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        _redis_clients[url] = client
    return client


def rate_limit_hit(rule: RateLimit, key: str, *, now: float | None = None) -> None:
    """Count one call of ``key``; raises RateLimited (with ``retry_after``
    seconds in its details) past the limit, Unavailable if Redis fails."""
    now = time.time() if now is None else now
    window = int(now // rule.window_seconds)
    retry_after = max(1, int((window + 1) * rule.window_seconds - now))
    url = settings.REDIS_URL
    if url:
        name = f"ratelimit:{rule.scope}:{key}:{window}"
        try:
            pipe = _redis(url).pipeline()
            pipe.incr(name)
            pipe.expire(name, rule.window_seconds + 1, nx=True)
            count = int(pipe.execute()[0])
        except redis.RedisError as exc:
            log.warning("rate_limit_unavailable", scope=rule.scope, error=type(exc).__name__)
            raise Unavailable() from None
    else:
        with _local_lock:
            if len(_local_counts) > 10_000:  # bounded: old windows are dropped wholesale
                _local_counts.clear()
            count = _local_counts[(rule.scope, key, window)] = _local_counts.get((rule.scope, key, window), 0) + 1
    if count > rule.limit:
        raise RateLimited(
            f"At most {rule.limit} calls per {rule.window_seconds} s; try again in {retry_after} s.",
            details={"retry_after": retry_after, "limit": rule.limit, "window_seconds": rule.window_seconds},
        )
