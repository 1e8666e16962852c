"""Django admin: a clinic admin sees their clinic's notes (status, versions,
who signed) and never another clinic's nor any note's text; platform staff
see note-engine usage per clinic and engine, which clinic admins cannot."""

import pytest
from django.urls import reverse

from notes.models import ClinicalNote
from notes.services import note_generate
from tests.admin.conftest import client_admin_a, client_platform, platform_user, staff_admin_a  # noqa: F401
from tests.notes.conftest import JA_LINES, make_ended_session


@pytest.fixture
def note_b(clinic_b, user_b, principal_b, run_jobs):
    session = make_ended_session(clinic_b, user_b, language="ja-JP", lines=JA_LINES, ref="visit-b")
    note_generate(principal=principal_b, session=session)
    run_jobs()
    return ClinicalNote.objects.get(session=session)


def test_it_shows_a_clinic_admin_their_notes_only(client_admin_a, drafted, note_b):  # noqa: F811
    note_a = ClinicalNote.objects.get(session=drafted)
    listing = client_admin_a.get(reverse("admin:notes_clinicalnote_changelist")).content.decode()
    assert str(drafted.pk) in listing and "draft" in listing.lower()
    assert str(note_b.session_id) not in listing
    page = client_admin_a.get(reverse("admin:notes_clinicalnote_change", args=[note_a.pk]))
    assert page.status_code == 200
    assert "chest pain" not in page.content.decode().lower()  # status and versions, never the text
    assert client_admin_a.get(reverse("admin:notes_clinicalnote_change", args=[note_b.pk])).status_code in (302, 404)
    usage = client_admin_a.get(reverse("admin:notes_noteenginecall_changelist"))
    assert usage.status_code == 403


def test_it_shows_platform_staff_the_engine_usage_per_clinic(client_platform, drafted, note_b):  # noqa: F811
    html = client_platform.get(reverse("admin:notes_noteenginecall_changelist")).content.decode()
    assert 'id="note-engine-usage"' in html
    assert "<td>Clinic A</td><td>extractive</td><td>1</td><td>0</td>" in html
    assert "<td>Clinic B</td><td>extractive</td><td>1</td><td>0</td>" in html
