"""Views never query clinic-owned models directly: they go through
``clinics.access`` (or a service/selector built on it)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLINIC_OWNED = {"ConsultationSession", "TranscriptSegment", "ApiKey", "Membership", "AuditEvent"}
MANAGERS = {"objects", "_default_manager", "_base_manager"}
APPS = ("clinics", "sessions", "transcription", "voiceai")


def view_modules() -> list[Path]:
    """The REST packages plus the apps' views, consumers and admin modules
    (the issue: "views, admin and consumers never query clinic-owned rows
    without" the access layer)."""
    found: set[Path] = set()
    for package in ("clinics/api", "sessions/api"):
        found.update((ROOT / package).rglob("*.py"))
    for app in APPS:
        found.update((ROOT / app).rglob("views.py"))
        found.update((ROOT / app).rglob("views/*.py"))
        found.update((ROOT / app).rglob("viewsets.py"))
        found.update((ROOT / app).rglob("consumers.py"))
        found.update((ROOT / app).rglob("admin.py"))
        found.update((ROOT / app).rglob("admin_*.py"))
    return sorted(p for p in found if "migrations" not in p.parts)


def direct_queries(source: str) -> list[str]:
    """``Model.objects`` (also through import aliases and ``models.Model``)
    on a clinic-owned model, as "line: expression"."""
    tree = ast.parse(source)
    names = set(CLINIC_OWNED)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.update(a.asname for a in node.names if a.name in CLINIC_OWNED and a.asname)
    hits = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr in MANAGERS):
            continue
        target = node.value
        model = target.id if isinstance(target, ast.Name) else target.attr if isinstance(target, ast.Attribute) else ""
        if model in names:
            hits.append(f"{node.lineno}: {ast.unparse(node)}")
    return hits


def test_it_finds_the_view_modules():
    modules = {p.relative_to(ROOT).as_posix() for p in view_modules()}
    assert {"sessions/api/views.py", "clinics/api/views.py", "clinics/api/platform.py"} <= modules


@pytest.mark.parametrize("module", view_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_it_keeps_view_modules_on_the_access_layer(module):
    assert direct_queries(module.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "from sessions.models import ConsultationSession\nConsultationSession.objects.get(pk=1)",
        "from clinics.models import ApiKey as K\nK.objects.filter(prefix='x')",
        "from clinics import models\nmodels.AuditEvent.objects.all()",
        "from clinics.models import Membership\nMembership._default_manager.all()",
        "from sessions.models import TranscriptSegment\ndef f():\n    return TranscriptSegment.objects.count()",
    ],
)
def test_it_detects_a_direct_query(source):
    assert len(direct_queries(source)) == 1


def test_it_allows_access_layer_calls():
    source = "from clinics.access import access_session\naccess_session(p, 1)\nClinic.objects.all()"
    assert direct_queries(source) == []
