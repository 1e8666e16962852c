"""The issue's "done when" probe: every endpoint of the generated OpenAPI
schema that takes an object id answers clinic B's key with 404 for each of
clinic A's objects, and nothing of clinic A changes."""

import re

import pytest
from rest_framework.test import APIClient

from clinics.models import AuditEvent
from sessions.models import SegmentRevision, SessionStatus
from tests.api.conftest import error_code

METHODS = ("get", "post", "put", "patch", "delete")


def object_ids(session_a, membership_clinician_a, key_a, clinic_a) -> dict[str, object]:
    """Which of clinic A's ids each id-taking path prefix is probed with."""
    return {
        "/api/v1/sessions/": session_a.id,
        "/api/v1/clinic/members/": membership_clinician_a.id,
        "/api/v1/clinic/api-keys/": key_a.id,
        "/api/v1/clinics/": clinic_a.id,
    }


@pytest.fixture(params=["api_key", "browser_session"])
def client_b(request, api_client_for, api_key_b, user_b):
    """Clinic B's admin, once with an API key and once signed in."""
    if request.param == "api_key":
        return api_client_for(api_key_b)
    client = APIClient()
    client.force_login(user_b)
    return client


def test_it_answers_404_to_another_clinic_on_every_object_endpoint_of_the_schema(
    api_client, client_b, clinic_a, session_a, segments_a, audio_a, membership_clinician_a, key_a
):
    schema = api_client.get("/api/v1/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    ids = object_ids(session_a, membership_clinician_a, key_a, clinic_a)
    audit_before = AuditEvent.objects.count()
    probed = []
    for template, operations in paths.items():
        if "{" not in template:
            continue
        params = set(re.findall(r"{(\w+)}", template))
        assert params <= {"id", "segment_id"} and "id" in params, f"{template}: probe knows only {{id}} paths"
        prefix = next((p for p in ids if template.startswith(p)), None)
        assert prefix is not None, f"{template}: no clinic-A object to probe it with; add one to object_ids()"
        # A real final of clinic A's session: the 404 must come from the tenant, not the segment id.
        path = template.replace("{id}", str(ids[prefix])).replace("{segment_id}", "s1")
        for method in METHODS:
            if method not in operations:
                continue
            response = getattr(client_b, method)(path, {}, format="json")
            probed.append((method, template))
            assert response.status_code == 404, (method, template, response.status_code, response.content)
            assert error_code(response) == "not_found", (method, template)
    # The schema really was walked: every id endpoint the issue names is there.
    assert len(probed) >= 17, probed
    for expected in ("end", "stream-token", "transcript", "audio", "quota", "consent", "segments/{segment_id}"):
        assert any(f"/{expected}/" in t for _, t in probed), expected
    assert ("delete", "/api/v1/sessions/{id}/") in probed
    # Nothing of clinic A changed and nothing was read on its behalf.
    session_a.refresh_from_db()
    key_a.refresh_from_db()
    clinic_a.refresh_from_db()
    membership_clinician_a.refresh_from_db()
    assert session_a.status == SessionStatus.CREATED and session_a.segments.count() == 3
    assert not session_a.has_consent and not SegmentRevision.objects.exists()
    assert key_a.revoked_at is None and clinic_a.is_active and membership_clinician_a.role == "clinician"
    assert AuditEvent.objects.count() == audit_before


def test_it_serves_swagger_ui_without_a_cdn(api_client):
    response = api_client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "drf_spectacular_sidecar" in html
    for cdn in ("cdn.jsdelivr", "unpkg.com", "cdnjs"):
        assert cdn not in html


def test_it_documents_the_api_key_scheme_and_error_paths(api_client):
    schema = api_client.get("/api/v1/schema/?format=json").json()
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "Authorization"
    not_found = schema["paths"]["/api/v1/sessions/{id}/audio/"]["get"]["responses"]["404"]
    assert not_found["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
    assert set(schema["components"]["schemas"]["ErrorDetail"]["properties"]) == {"code", "message", "details"}
    create = schema["paths"]["/api/v1/sessions/"]["post"]["responses"]["201"]
    assert create["content"]["application/json"]["schema"]["$ref"].endswith("SessionCreated")
