"""Django-level 404/500 pages: JSON in the API's error shape under
``/api/``, Django's usual pages elsewhere (admin, web UI)."""

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from voiceai.api_errors import error_body


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("server_error", "Internal error. Quote the X-Request-Id header."), status=500)
    return defaults.server_error(request)


def admin_shortcut_disabled(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Replaces the admin's ``r/<content_type>/<id>/`` "view on site"
    redirect. Django's view looks the object up unscoped, so its two 404
    messages ("doesn't exist" vs "has no get_absolute_url") told a clinic
    admin which ids exist in other clinics, and a malformed UUID raised a
    500. No model here has an absolute URL, so nothing uses it."""
    raise Http404
