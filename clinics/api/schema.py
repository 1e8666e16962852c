"""OpenAPI pieces shared by the API views: the one error shape."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="Stable machine code, e.g. not_found, invalid, unknown_field, clinic_suspended, admin_required."
    )
    message = serializers.CharField(help_text="Human-readable explanation.")
    details = serializers.DictField(help_text="Per-field messages or extra data; may be empty.")


class ErrorSerializer(serializers.Serializer):
    """Every error of the API: ``{"error": {"code", "message", "details"}}``."""

    error = ErrorDetailSerializer()


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)
