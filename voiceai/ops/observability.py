"""/metrics and the HTTP request counter."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voiceai.ops.metrics import HTTP_REQUESTS


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. Guarded by METRICS_TOKEN when set (the
    scraper sends ``Authorization: Bearer <token>``); in production the
    load balancer also keeps /metrics off the public listener."""
    token = settings.METRICS_TOKEN
    if token and request.headers.get("Authorization", "") != f"Bearer {token}":
        return HttpResponse(status=404)
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)


class HttpMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        HTTP_REQUESTS.labels(status_class=f"{response.status_code // 100}xx").inc()
        return response
