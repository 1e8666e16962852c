"""Every notes path is tenant-scoped: clinic A's admin and clinician reach
clinic A's note; clinic B's user gets 404 on every path, method and
version, and nothing of clinic A changes or is audited for them."""

import pytest

from clinics.access import access_note, notes_visible_to
from clinics.models import AuditEvent
from notes.models import ClinicalNote
from notes.services import note_edit, note_generate, note_read, note_retry, note_sign
from voiceai.errors import NotFound

PATHS = [
    ("get", "note/", None),
    ("get", "note/?version=1", None),
    ("get", "note/?signed=true", None),
    ("put", "note/", {"version": 1, "revision": 0, "sections": {}}),
    ("get", "note/text/", None),
    ("get", "note/text/?version=1", None),
    ("get", "note/fhir/", None),
    ("post", "note/generate/", {}),
    ("post", "note/retry/", None),
    ("post", "note/sign/", {"version": 1, "revision": 0}),
    ("get", "transcript/fhir/", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PATHS)
def test_it_answers_404_to_another_clinic_on_every_path(client_b, drafted, method, path, body):
    before = ClinicalNote.objects.get(session=drafted)
    audited = AuditEvent.objects.count()
    response = getattr(client_b, method)(f"/api/v1/sessions/{drafted.pk}/{path}", body, format="json")
    assert response.status_code == 404, (path, response.content)
    assert response.json()["error"]["code"] == "not_found"
    after = ClinicalNote.objects.get(session=drafted)
    assert (after.revision, after.status, after.sections) == (before.revision, before.status, before.sections)
    assert AuditEvent.objects.count() == audited


@pytest.mark.parametrize("client_fixture", ["client_a", "client_a_admin"])
def test_it_lets_both_roles_of_the_clinic_read_and_sign(request, drafted, client_fixture):
    client = request.getfixturevalue(client_fixture)
    assert client.get(f"/api/v1/sessions/{drafted.pk}/note/").status_code == 200
    signed = client.post(f"/api/v1/sessions/{drafted.pk}/note/sign/", {"version": 1, "revision": 0}, format="json")
    assert signed.status_code == 200
    assert client.get(f"/api/v1/sessions/{drafted.pk}/note/fhir/").status_code == 200


def test_it_keeps_the_services_and_access_layer_inside_the_clinic(drafted, principal_b):
    for call in (
        lambda: note_read(principal=principal_b, session=drafted),
        lambda: note_generate(principal=principal_b, session=drafted),
        lambda: note_retry(principal=principal_b, session=drafted),
        lambda: note_edit(principal=principal_b, session=drafted, version=1, revision=0, sections={}),
        lambda: note_sign(principal=principal_b, session=drafted, version=1, revision=0),
        lambda: access_note(principal_b, drafted),
        lambda: notes_visible_to(principal_b, drafted),
    ):
        with pytest.raises(NotFound):
            call()
    assert not notes_visible_to(principal_b).exists()
