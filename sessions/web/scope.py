"""Which clinic a console page acts for.

Every console view runs as a ``clinics.access.Principal`` resolved here from
the signed-in user and ``request.session["clinic_id"]`` — the same key the
REST API reads, so the page and its API calls agree on the clinic. A user in
several clinics picks one first. Lookups then go through the access layer,
whose NotFound (missing or another clinic's) becomes a 404 page.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from clinics.access import Principal, memberships_of
from clinics.api.base import SESSION_CLINIC_KEY, request_id
from clinics.principals import principal_for_caller
from voiceai.client_ip import client_ip
from voiceai.errors import ClinicSuspended, Forbidden, NotFound

View = Callable[..., HttpResponse]


def console_principal(request: HttpRequest) -> Principal:
    return request.console_principal  # type: ignore[attr-defined]


def console_view(*, admin: bool = False) -> Callable[[View], View]:
    """Login, clinic choice and principal for a console view; ``admin``
    views answer 403 to clinicians. Domain errors become 404/403 pages."""

    def decorator(view: View) -> View:
        # Every console page shows one clinic's sessions (and the record and
        # live pages their transcripts): never stored by a browser or proxy.
        @never_cache
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            memberships = list(memberships_of(request.user))
            if not memberships:
                return render(request, "console/no_clinic.html", status=403)
            chosen = request.session.get(SESSION_CLINIC_KEY)
            if chosen and all(str(m.clinic_id) != str(chosen) for m in memberships):
                # The membership was removed since the choice was made.
                request.session.pop(SESSION_CLINIC_KEY, None)
                chosen = None
            if not chosen and len(memberships) > 1:
                query = urlencode({"next": request.get_full_path()})
                return redirect(f"{reverse('console:clinic_pick')}?{query}")
            try:
                principal = principal_for_caller(
                    user=request.user,
                    wanted_clinic=chosen,
                    client_ip=client_ip(request),
                    request_id=request_id(request),
                )
            except ClinicSuspended:
                return render(request, "console/suspended.html", {"memberships": memberships}, status=403)
            request.console_principal = principal  # type: ignore[attr-defined]
            request.console_memberships = memberships  # type: ignore[attr-defined]
            # The 403 and 404 pages keep the console's header and navigation.
            chrome = {"principal": principal, "clinic": principal.clinic, "memberships": memberships}
            if admin and not principal.is_admin:
                return render(request, "403.html", chrome, status=403)
            # Clinicians read times in their clinic's zone, not the server's.
            timezone.activate(ZoneInfo(principal.clinic.time_zone))
            try:
                return view(request, *args, **kwargs)
            except (NotFound, Http404):
                return render(request, "404.html", chrome, status=404)
            except (Forbidden, PermissionDenied):
                return render(request, "403.html", chrome, status=403)
            finally:
                timezone.deactivate()

        return wrapped

    return decorator
