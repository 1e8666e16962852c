"""/metrics and the HTTP request counter."""

import hmac
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voiceai.ops.metrics import HTTP_REQUESTS


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. The scraper sends ``Authorization: Bearer
    <METRICS_TOKEN>``; without DEBUG there is no /metrics at all until a
    token is set (404, like a wrong token). The load balancer's path rule is
    not enough on its own: it matches the raw path, and ``/%6detrics``
    reached this view (Django routes the decoded path)."""
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST) if settings.DEBUG else _hidden()
    if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()):
        return _hidden()
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)


def _hidden() -> HttpResponse:
    return HttpResponse(status=404)


class HttpMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        HTTP_REQUESTS.labels(status_class=f"{response.status_code // 100}xx").inc()
        return response
