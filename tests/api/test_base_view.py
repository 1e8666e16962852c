"""The clinic-scoped base view can't be bypassed by a subclass."""

import pytest
from rest_framework.request import Request

from clinics.api.base import ClinicScopedAPIView, client_ip, validated_data
from sessions.api.serializers import SessionCreateSerializer
from voiceai.errors import InvalidInput


@pytest.mark.parametrize("method", ["initial", "dispatch", "perform_authentication", "resolve_principal"])
def test_it_refuses_subclasses_that_skip_the_principal(method):
    with pytest.raises(TypeError, match=method):
        type("Sneaky", (ClinicScopedAPIView,), {method: lambda self, *a, **k: None})


def test_it_refuses_a_static_queryset():
    from sessions.models import ConsultationSession

    with pytest.raises(TypeError, match="queryset"):
        type("AllSessions", (ClinicScopedAPIView,), {"queryset": ConsultationSession.objects.all()})


def test_it_refuses_unknown_fields_before_validating_types():
    with pytest.raises(InvalidInput) as info:
        validated_data(SessionCreateSerializer, {"language": 5, "patient": "x"})
    assert info.value.code == "unknown_field" and set(info.value.details) == {"patient"}


def test_it_trusts_forwarded_for_only_behind_the_proxy(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    settings.SECURE_PROXY_SSL_HEADER = None
    assert client_ip(Request(request)) == "10.0.0.5"
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert client_ip(Request(request)) == "203.0.113.9"


def test_it_leaves_multipart_uploads_to_the_view_but_caps_other_bodies(client_a, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    upload = client_a.post("/api/v1/sessions/", {"f": ("x" * 5000)}, format="multipart")
    # Not refused for size: the JSON-only view refuses the media type instead.
    assert upload.status_code == 415
    json_body = client_a.post("/api/v1/sessions/", {"external_ref": "x" * 5000}, format="json")
    assert json_body.status_code == 413


@pytest.mark.parametrize(
    ("header", "status", "code"),
    [
        ("Api-Key ", 401, "authentication_failed"),
        ("Api-Key vai_00000000_nope", 401, "authentication_failed"),
        ("Api-Key not-even-a-key", 401, "authentication_failed"),
        ("Bearer something", 401, "not_authenticated"),
    ],
)
def test_it_refuses_bad_authorization_headers(api_client, api_key_a_clinician, header, status, code):
    response = api_client.get("/api/v1/sessions/", HTTP_AUTHORIZATION=header)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_it_accepts_the_scheme_in_any_case(api_client, api_key_a_clinician):
    response = api_client.get("/api/v1/sessions/", HTTP_AUTHORIZATION=f"api-key {api_key_a_clinician}")
    assert response.status_code == 200
