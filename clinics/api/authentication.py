"""``Authorization: Api-Key <key>`` for integrators.

The key authenticates a clinic and a role, not a person: DRF's
``request.user`` becomes an ``ApiKeyUser`` (authenticated, never staff) and
``request.auth`` the ``ApiKey``. The clinic-scoped views turn that into a
``clinics.access.Principal``.
"""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from clinics.models import ApiKey
from clinics.services import api_key_authenticate

KEYWORD = "Api-Key"


class ApiKeyUser:
    """Stands in for a user so DRF's permission checks work; it has no pk
    and no staff rights."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != KEYWORD.lower():
            return None  # another scheme: let the next authenticator try
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed("The Api-Key header is empty.")
        key = api_key_authenticate(raw)
        if key is None:
            # Same answer for unknown, malformed and revoked keys.
            raise exceptions.AuthenticationFailed("The API key is invalid or revoked.")
        return ApiKeyUser(key), key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to unauthenticated calls.
        return KEYWORD


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents the scheme in the OpenAPI schema (Swagger UI's Authorize)."""

    target_class = "clinics.api.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>` — a clinic API key.",
        }
