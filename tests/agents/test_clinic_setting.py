"""The clinic's MCP switch and key roles: off for new clinics, changed by
the clinic's admins through PATCH /api/v1/clinic/ (audited), never by
clinicians or another clinic's key."""

import pytest

from clinics.audit import AuditAction
from clinics.models import AuditEvent, Clinic, McpKeyRoles

pytestmark = pytest.mark.django_db


def test_it_keeps_mcp_off_and_admin_keys_only_for_a_new_clinic(clinic_a):
    assert clinic_a.mcp_enabled is False
    assert clinic_a.mcp_key_roles == McpKeyRoles.ADMIN


def test_it_lets_a_clinic_admin_switch_mcp_on_for_clinician_keys_with_an_audit_row(
    api_client_for, api_key_a_admin, clinic_a
):
    response = api_client_for(api_key_a_admin).patch(
        "/api/v1/clinic/", {"mcp_enabled": True, "mcp_key_roles": "admin_clinician"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert (response.json()["mcp_enabled"], response.json()["mcp_key_roles"]) == (True, "admin_clinician")
    clinic_a.refresh_from_db()
    assert clinic_a.mcp_enabled and clinic_a.mcp_key_roles == McpKeyRoles.ADMIN_CLINICIAN
    row = AuditEvent.objects.get(clinic=clinic_a, action=AuditAction.CLINIC_UPDATE)
    assert sorted(row.details["fields"]) == ["mcp_enabled", "mcp_key_roles"]


@pytest.mark.parametrize("body", [{"mcp_enabled": "yes"}, {"mcp_key_roles": "everyone"}])
def test_it_rejects_bad_mcp_settings(api_client_for, api_key_a_admin, body):
    response = api_client_for(api_key_a_admin).patch("/api/v1/clinic/", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_it_refuses_mcp_changes_by_clinicians_and_changes_only_the_callers_clinic(
    api_client_for, api_key_a_clinician, api_key_b, clinic_a, clinic_b
):
    refused = api_client_for(api_key_a_clinician).patch("/api/v1/clinic/", {"mcp_enabled": True}, format="json")
    assert refused.status_code == 403
    assert api_client_for(api_key_b).patch("/api/v1/clinic/", {"mcp_enabled": True}, format="json").status_code == 200
    assert Clinic.objects.get(pk=clinic_a.pk).mcp_enabled is False
    assert Clinic.objects.get(pk=clinic_b.pk).mcp_enabled is True
