"""``seed_demo`` gives ``make run`` something for an assistant to find: the
demo clinic's finished Japanese and English consultations, searchable, and
MCP on for its (admin) key — once, however often the command runs."""

import io

import pytest
from django.core.management import call_command

from clinics.access import principal_for_api_key, require_mcp_access
from clinics.audit import AuditAction
from clinics.models import AuditEvent, Clinic
from clinics.services import api_key_authenticate
from sessions.models import ConsultationSession, SessionStatus
from sessions.search import search_query_parse, transcript_search

pytestmark = pytest.mark.django_db


def _seed(key_file) -> str:
    out = io.StringIO()
    call_command("seed_demo", "--force", "--key-file", str(key_file), stdout=out)
    return out.getvalue()


def test_it_seeds_searchable_consultations_and_mcp_once(tmp_path):
    key_file = tmp_path / "key.txt"
    text = _seed(key_file)
    _seed(key_file)
    clinic = Clinic.objects.get(slug="demo")
    sessions = ConsultationSession.objects.filter(clinic=clinic)
    assert sorted(sessions.values_list("language", flat=True)) == ["en-US", "ja-JP", "ja-JP"]
    assert set(sessions.values_list("status", flat=True)) == {SessionStatus.ENDED}
    assert set(sessions.values_list("source", flat=True)) == {"import"}
    assert AuditEvent.objects.filter(clinic=clinic, action=AuditAction.TRANSCRIPT_WRITE).count() == 3

    principal = principal_for_api_key(api_key_authenticate(key_file.read_text().strip()))
    require_mcp_access(principal)  # on, and the demo key's role may use it
    for term, ref in (("頭痛", "demo-ja-headache"), ("発熱", "demo-ja-cough"), ("chest pain", "demo-en-chest-pain")):
        hits = list(transcript_search(principal=principal, query=search_query_parse(term)))
        assert {hit.session.external_ref for hit in hits} == {ref}, term
    assert "MCP:          on for demo" in text
    assert "/mcp" in text and "manage.py mcp" in text


def test_it_leaves_mcp_off_when_an_admin_switched_it_off(tmp_path):
    key_file = tmp_path / "key.txt"
    _seed(key_file)
    Clinic.objects.filter(slug="demo").update(mcp_enabled=False)
    assert "OFF" in _seed(key_file)
    assert Clinic.objects.get(slug="demo").mcp_enabled is False
