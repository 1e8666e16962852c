"""The OpenAPI document is generated without a warning (what
``manage.py spectacular --validate --fail-on-warn`` checks) and documents
issue 13's speaker roles and review endpoints with examples."""

import yaml
from django.core.management import call_command


def test_it_generates_a_valid_schema_without_warnings_documenting_the_review_endpoints(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    speakers = schema["paths"]["/api/v1/sessions/{id}/speakers/"]
    assert set(speakers) >= {"get", "put"}
    assert "examples" in speakers["put"]["requestBody"]["content"]["application/json"]
    confirm = schema["paths"]["/api/v1/sessions/{id}/segments/{segment_id}/confirm/"]["post"]
    assert "examples" in confirm["requestBody"]["content"]["application/json"] and "409" in confirm["responses"]
    segment = schema["components"]["schemas"]["TranscriptSegment"]["properties"]
    assert {"speaker_role", "needs_review", "reviewed_by", "reviewed_at"} <= set(segment)
    assert "low_confidence_threshold" in schema["components"]["schemas"]["PatchedClinicPatchRequest"]["properties"]
