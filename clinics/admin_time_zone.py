"""One time zone per reader in Django admin.

The console shows a clinic's times in the clinic's zone
(``Clinic.time_zone``, ``sessions/web/scope.py``); a clinic admin reading
the same sessions in ``/admin/`` must see the same clock, not the server's
``TIME_ZONE``. Platform staff, who see every clinic, keep ``TIME_ZONE``.
Either way the admin's header names the zone (``templates/admin/base_site.html``).
"""

from collections.abc import Callable
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone

from clinics.admin_scoping import admin_principals, is_platform_staff


class AdminClinicTimeZoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.prefix = ""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not self.prefix:
            self.prefix = reverse("admin:index")
        zone = self._clinic_zone(request) if request.path.startswith(self.prefix) else None
        if zone is None:
            return self.get_response(request)
        timezone.activate(ZoneInfo(zone))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()

    @staticmethod
    def _clinic_zone(request: HttpRequest) -> str | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_staff or is_platform_staff(user):
            return None
        principals = admin_principals(request)
        # Several clinics: the first one's zone (clinics are ordered by name);
        # the header says which zone that is.
        return principals[0].clinic.time_zone if principals else None
