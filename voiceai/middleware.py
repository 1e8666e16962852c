import re
import uuid
from collections.abc import Callable

import structlog
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from voiceai.api_errors import error_body

_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestIdMiddleware:
    """Gives every request an id (the caller's X-Request-Id when it is sane)
    and binds it to the log context so every line of the request carries it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-Id", "")
        # fullmatch: with match(), "$" also matches before a trailing newline,
        # which would then reach response headers and log lines.
        request_id = incoming if _SAFE_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        response = self.get_response(request)
        response["X-Request-Id"] = request_id
        return response


class NulByteQueryMiddleware:
    """Refuses a query string with a NUL character (400). PostgreSQL can't
    hold one in a text parameter, so any filter that passed it on (admin
    lists, console filters) failed with a 500. Nothing here ever needs one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()):
            if request.path_info.startswith("/api/"):
                return JsonResponse(
                    error_body("malformed_request", "The query string holds a NUL character."), status=400
                )
            return HttpResponseBadRequest("The query string holds a NUL character.")
        return self.get_response(request)
