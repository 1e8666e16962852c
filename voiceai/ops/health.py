"""Liveness and readiness for the load balancer and orchestrator.

``/healthz``: the process answers. ``/readyz``: the database, Redis (when
REDIS_URL is set) and storage are reachable; 503 otherwise. Failures are
logged by exception class only — connection strings carry credentials.
"""

import os
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from voiceai.logging import get_logger
from voiceai.ops import drain

log = get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_redis() -> None:
    import redis

    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()


def check_storage() -> None:
    storage = default_storage
    if isinstance(storage, FileSystemStorage):
        # The media folder is created on first write: the nearest existing
        # ancestor must be a writable directory.
        path = Path(storage.location)
        while not path.exists() and path != path.parent:
            path = path.parent
        if not (path.is_dir() and os.access(path, os.W_OK)):
            raise OSError("media folder is not writable")
        return
    bucket = getattr(storage, "bucket", None)
    if bucket is not None:
        bucket.meta.client.head_bucket(Bucket=bucket.name)
        return
    storage.exists("readyz-probe")


def readiness_checks() -> dict[str, Callable[[], None]]:
    checks: dict[str, Callable[[], None]] = {"database": check_database}
    if settings.REDIS_URL:
        checks["redis"] = check_redis
    checks["storage"] = check_storage
    return checks


@never_cache
@require_http_methods(["GET", "HEAD"])
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_http_methods(["GET", "HEAD"])
def readyz(request: HttpRequest) -> JsonResponse:
    if drain.is_draining():
        # SIGTERM received (voiceai.ops.drain): the load balancer must stop
        # sending new connections here while the live ones are moved.
        return JsonResponse({"status": "draining"}, status=503)
    results: dict[str, str] = {}
    for name, check in readiness_checks().items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # any failure means "not ready", never a 500
            log.warning("readiness_check_failed", check=name, error=type(exc).__name__)
            results[name] = "unavailable"
    ready = all(v == "ok" for v in results.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": results}, status=200 if ready else 503)


_PROBES = {"/healthz": healthz, "/readyz": readyz}


class HealthCheckMiddleware:
    """Answers the probes before anything validates the Host header: load
    balancers (ALB target groups, Kubernetes) probe a target by its IP,
    which is not in ALLOWED_HOSTS. The probes never use the host."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = _PROBES.get(request.path_info)
        if probe is not None:
            return probe(request)
        return self.get_response(request)
