"""The SOAP note panel on a consultation's page (issue 13): its status
while the draft is written, the draft with evidence links, edits and the
signature with the version and revision read (a stale page is refused and
says so), a signed version read-only with a new version to start, a failed
draft retried, and another clinic's consultation 404 on every note URL."""

import json

import pytest

from clinics.access import principal_for_user
from clinics.models import AuditEvent
from notes.jobs import note_jobs_run_due
from notes.models import ClinicalNote, NoteStatus
from notes.services import note_generate
from sessions.models import ConsultationSession, TranscriptSegment
from tests.web.conftest import signed_in

pytestmark = pytest.mark.django_db

LINES = [
    ("s0", "I have had a headache for three days."),
    ("s1", "Blood pressure is 128 over 84."),
    ("s2", "This is likely a tension headache."),
    ("s3", "I will prescribe ibuprofen and we will follow up in two weeks."),
]


def _session(clinic, user, language="en-US", lines=LINES) -> ConsultationSession:
    session = ConsultationSession.objects.create(
        clinic=clinic, created_by=user, language=language, engine="fake", status="ended", audio_duration_ms=9000
    )
    for i, (segment_id, text) in enumerate(lines):
        TranscriptSegment.objects.create(
            clinic=clinic,
            session=session,
            segment_id=segment_id,
            start_ms=i * 2000,
            end_ms=i * 2000 + 1800,
            text=text,
        )
    return session


def _drafted(session, user) -> ClinicalNote:
    note_generate(principal=principal_for_user(user, clinic_id=session.clinic_id), session=session)
    note_jobs_run_due()
    note = ClinicalNote.objects.get(session=session)
    assert note.status == NoteStatus.DRAFT, note.error_code
    return note


@pytest.fixture
def session_a(clinic_a, clinician_a) -> ConsultationSession:
    return _session(clinic_a, clinician_a)


@pytest.fixture
def draft_a(session_a, clinician_a) -> ClinicalNote:
    return _drafted(session_a, clinician_a)


def _page(client, session, query: str = "") -> str:
    response = client.get(f"/sessions/{session.pk}/{query}")
    assert response.status_code == 200
    return response.content.decode()


def _form(note: ClinicalNote, **texts: str) -> dict[str, object]:
    """The draft form as the page posts it, with some sentences rewritten."""
    data: dict[str, object] = {"version": note.version, "revision": note.revision}
    for key, sentences in note.sections.items():
        for s in sentences:
            data[f"{key}.{s['id']}"] = texts.get(s["id"], s["text"])
    return data


def _sentences(note: ClinicalNote) -> list[tuple[str, str, str, list[str]]]:
    return [(key, s["id"], s["text"], s["evidence"]) for key, items in note.sections.items() for s in items]


def _sentence_id(note: ClinicalNote, segment_id: str) -> str:
    return next(s["id"] for items in note.sections.values() for s in items if segment_id in s["evidence"])


def test_it_shows_the_draft_with_soap_sections_evidence_and_the_extractive_banner(draft_a, session_a, clinician_a):
    html = _page(signed_in(clinician_a), session_a)
    for label in ("Subjective", "Objective", "Assessment", "Plan"):
        assert f"<legend>{label}</legend>" in html
    assert "Extractive draft:" in html and "nothing is generated" in html
    # Each sentence links to its evidence line and the span it covers.
    assert 'href="#seg-s1" data-evidence="s1"' in html and "00:02\N{EN DASH}00:03" in html
    assert 'id="seg-s1"' in html and 'data-end="3800"' in html
    assert 'name="objective.' in html and "Blood pressure is 128 over 84." in html
    assert 'id="note-sign"' in html and "Sign this note?" in html
    assert AuditEvent.objects.filter(action="note.read", object_id=str(draft_a.pk)).exists()


def test_it_labels_a_japanese_consultations_sections_in_japanese(clinic_a, clinician_a):
    session = _session(
        clinic_a,
        clinician_a,
        language="ja-JP",
        lines=[("j0", "三日前から頭が痛いです。"), ("j1", "血圧は128の84です。"), ("j2", "痛み止めを出します。")],
    )
    _drafted(session, clinician_a)
    html = _page(signed_in(clinician_a), session)
    for label in ("主訴・現病歴", "所見", "評価", "計画"):
        assert f"<legend>{label}</legend>" in html
    ja = signed_in(clinician_a).get(f"/sessions/{session.pk}/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "抽出による下書き" in ja  # the engine banner in the interface's language


def test_it_says_the_draft_is_written_while_the_job_is_queued(session_a, clinician_a):
    note_generate(principal=principal_for_user(clinician_a, clinic_id=session_a.clinic_id), session=session_a)
    client = signed_in(clinician_a)
    html = _page(client, session_a)
    assert 'id="note-progress"' in html and 'data-status="queued"' in html
    status = client.get(f"/sessions/{session_a.pk}/note/status/")
    assert status.status_code == 200
    assert json.loads(status.content) == {"status": "queued", "progress": 0, "version": 1, "revision": 0, "attempts": 0}
    note_jobs_run_due()
    assert json.loads(client.get(f"/sessions/{session_a.pk}/note/status/").content)["status"] == "draft"


def test_it_offers_a_first_draft_for_an_ended_consultation_without_one(session_a, clinician_a):
    client = signed_in(clinician_a)
    assert 'id="note-generate"' in _page(client, session_a)
    assert client.get(f"/sessions/{session_a.pk}/note/status/").status_code == 404
    response = client.post(f"/sessions/{session_a.pk}/note/generate/")
    assert response.status_code == 302 and response["Location"].endswith("#note")
    assert ClinicalNote.objects.get(session=session_a).status == NoteStatus.QUEUED


def test_it_does_not_draft_a_note_of_an_open_consultation(clinic_a, clinician_a):
    live = ConsultationSession.objects.create(clinic=clinic_a, language="en-US", engine="fake", status="live")
    client = signed_in(clinician_a)
    assert "when the consultation ends" in _page(client, live)
    client.post(f"/sessions/{live.pk}/note/generate/")
    assert not ClinicalNote.objects.exists()
    assert "A note is drafted once the consultation has ended." in _page(client, live)


def test_it_saves_an_edit_keeping_the_evidence(draft_a, session_a, clinician_a):
    client = signed_in(clinician_a)
    sid = _sentence_id(draft_a, "s1")
    response = client.post(f"/sessions/{session_a.pk}/note/", _form(draft_a, **{sid: "BP 128/84 mmHg."}))
    assert response.status_code == 302
    note = ClinicalNote.objects.get(pk=draft_a.pk)
    assert note.revision == draft_a.revision + 1
    edited = next(s for items in note.sections.values() for s in items if s["id"] == sid)
    assert edited == {"id": sid, "text": "BP 128/84 mmHg.", "evidence": ["s1"], "edited": True}
    html = _page(client, session_a)
    assert "The draft is saved." in html and "BP 128/84 mmHg." in html


def test_it_drops_an_emptied_sentence_and_adds_the_clinicians_own(draft_a, session_a, clinician_a):
    sid = _sentence_id(draft_a, "s2")
    data = _form(draft_a, **{sid: "  "})
    data["assessment.new"] = "Tension-type headache."
    signed_in(clinician_a).post(f"/sessions/{session_a.pk}/note/", data)
    note = ClinicalNote.objects.get(pk=draft_a.pk)
    assert [s["text"] for s in note.sections["assessment"]] == ["Tension-type headache."]
    assert note.sections["assessment"][0]["evidence"] == []


def test_it_refuses_an_edit_from_a_stale_page_and_says_so(draft_a, session_a, clinician_a, admin_a):
    sid = _sentence_id(draft_a, "s1")
    signed_in(admin_a).post(f"/sessions/{session_a.pk}/note/", _form(draft_a, **{sid: "admin's words."}))
    client = signed_in(clinician_a)
    client.post(f"/sessions/{session_a.pk}/note/", _form(draft_a, **{sid: "clinician's words."}))
    note = ClinicalNote.objects.get(pk=draft_a.pk)
    assert "admin's words." in json.dumps(note.sections) and "clinician's words." not in json.dumps(note.sections)
    assert "The note was changed meanwhile" in _page(client, session_a)


def test_it_signs_the_draft_with_unsaved_edits_and_shows_it_read_only(draft_a, session_a, clinician_a):
    client = signed_in(clinician_a)
    sid = _sentence_id(draft_a, "s3")
    response = client.post(
        f"/sessions/{session_a.pk}/note/sign/", _form(draft_a, **{sid: "Ibuprofen; review in 2 weeks."})
    )
    assert response.status_code == 302
    note = ClinicalNote.objects.get(pk=draft_a.pk)
    assert note.status == NoteStatus.SIGNED and note.signed_by == f"user:{clinician_a.pk}"
    assert "Ibuprofen; review in 2 weeks." in json.dumps(note.sections)
    html = _page(client, session_a)
    assert "The note is signed." in html
    assert 'id="note-readonly"' in html and '<textarea id="sentence-' not in html
    assert 'id="note-sign"' not in html and 'id="note-new-version"' in html
    assert "Ibuprofen; review in 2 weeks." in html and clinician_a.username in html
    assert AuditEvent.objects.filter(action="note.sign", object_id=str(note.pk)).exists()


def test_it_signs_an_unchanged_draft_without_recording_an_edit(draft_a, session_a, clinician_a):
    signed_in(clinician_a).post(f"/sessions/{session_a.pk}/note/sign/", _form(draft_a))
    note = ClinicalNote.objects.get(pk=draft_a.pk)
    assert note.status == NoteStatus.SIGNED and note.revision == draft_a.revision and note.edited_at is None


def test_it_refuses_to_sign_from_a_stale_page(draft_a, session_a, clinician_a, admin_a):
    sid = _sentence_id(draft_a, "s0")
    signed_in(admin_a).post(f"/sessions/{session_a.pk}/note/", _form(draft_a, **{sid: "Headache, 3 days."}))
    client = signed_in(clinician_a)
    client.post(f"/sessions/{session_a.pk}/note/sign/", _form(draft_a))
    assert ClinicalNote.objects.get(pk=draft_a.pk).status == NoteStatus.DRAFT
    assert "The note was changed meanwhile" in _page(client, session_a)


def test_it_never_changes_a_signed_note_and_starts_a_new_version_instead(draft_a, session_a, clinician_a):
    client = signed_in(clinician_a)
    client.post(f"/sessions/{session_a.pk}/note/sign/", _form(draft_a))
    signed = ClinicalNote.objects.get(pk=draft_a.pk)
    response = client.post(
        f"/sessions/{session_a.pk}/note/new-version/", {"version": signed.version, "revision": signed.revision}
    )
    assert response.status_code == 302
    new = ClinicalNote.objects.get(session=session_a, version=2)
    assert new.status == NoteStatus.DRAFT and new.supersedes_id == signed.pk
    assert _sentences(new) == _sentences(signed)  # the same sentences and evidence
    html = _page(client, session_a)
    assert 'id="note-form"' in html and "A new draft version is started" in html
    assert html.count('class="note-versions"') == 1 and "?note=1#note" in html and "?note=2#note" in html
    # The signed version 1 stays readable, read-only.
    old = _page(client, session_a, "?note=1")
    assert 'id="note-readonly"' in old and 'id="note-form"' not in old and "Show the latest version" in old
    # Signing version 2 supersedes version 1.
    client.post(f"/sessions/{session_a.pk}/note/sign/", _form(new))
    assert ClinicalNote.objects.get(pk=signed.pk).status == NoteStatus.SUPERSEDED
    assert "This version was replaced by a later signed version." in _page(client, session_a, "?note=1")


def test_it_keeps_a_note_signed_meanwhile_and_saves_a_stale_pages_edits_as_a_new_version(
    draft_a, session_a, clinician_a, admin_a
):
    signed_in(admin_a).post(f"/sessions/{session_a.pk}/note/sign/", _form(draft_a))
    signed = ClinicalNote.objects.get(pk=draft_a.pk)
    client = signed_in(clinician_a)
    sid = _sentence_id(draft_a, "s0")
    client.post(f"/sessions/{session_a.pk}/note/", _form(draft_a, **{sid: "rewritten."}))
    assert ClinicalNote.objects.get(pk=draft_a.pk).sections == signed.sections
    new = ClinicalNote.objects.get(session=session_a, version=2)
    assert new.status == NoteStatus.DRAFT and "rewritten." in json.dumps(new.sections)
    assert "The note was signed meanwhile" in _page(client, session_a)


def test_it_signs_nothing_from_a_page_loaded_before_the_note_was_signed(draft_a, session_a, clinician_a, admin_a):
    signed_in(admin_a).post(f"/sessions/{session_a.pk}/note/sign/", _form(draft_a))
    client = signed_in(clinician_a)
    sid = _sentence_id(draft_a, "s0")
    client.post(f"/sessions/{session_a.pk}/note/sign/", _form(draft_a, **{sid: "rewritten."}))
    assert list(ClinicalNote.objects.values_list("version", "status")) == [(1, "signed")]
    assert ClinicalNote.objects.get().signed_by == f"user:{admin_a.pk}"
    assert "This version was signed meanwhile" in _page(client, session_a)


def test_it_answers_404_for_a_version_that_does_not_exist(draft_a, session_a, clinician_a):
    assert signed_in(clinician_a).get(f"/sessions/{session_a.pk}/?note=7").status_code == 404


def test_it_shows_a_failed_draft_and_retries_it(draft_a, session_a, clinician_a):
    ClinicalNote.objects.filter(pk=draft_a.pk).update(
        status=NoteStatus.FAILED, error_code="note_engine_timeout", error_retryable=True
    )
    client = signed_in(clinician_a)
    html = _page(client, session_a)
    assert 'id="note-failed"' in html and "note_engine_timeout" in html and 'id="note-retry"' in html
    response = client.post(f"/sessions/{session_a.pk}/note/retry/")
    assert response.status_code == 302
    assert ClinicalNote.objects.get(pk=draft_a.pk).status == NoteStatus.QUEUED
    # Retrying what is not failed changes nothing and says why.
    client.post(f"/sessions/{session_a.pk}/note/retry/")
    assert "no longer failed" in _page(client, session_a)


def test_it_shows_the_notes_version_and_status_with_the_consultations_details(draft_a, session_a, clinician_a):
    html = _page(signed_in(clinician_a), session_a)
    assert '<dd id="facts-note"><a href="#note">Version 1</a> <span class="badge badge-draft">Draft</span>' in html


NOTE_POSTS = ["note/", "note/sign/", "note/new-version/", "note/retry/", "note/generate/"]


@pytest.mark.parametrize("path", NOTE_POSTS)
def test_it_answers_404_for_another_clinics_note(draft_a, session_a, user_b, path):
    before = ClinicalNote.objects.get(pk=draft_a.pk)
    response = signed_in(user_b).post(f"/sessions/{session_a.pk}/{path}", _form(draft_a))
    assert response.status_code == 404
    after = ClinicalNote.objects.get(pk=draft_a.pk)
    assert (after.status, after.revision, after.sections) == (before.status, before.revision, before.sections)
    assert ClinicalNote.objects.count() == 1


def test_it_answers_404_for_another_clinics_note_status_and_versions(draft_a, session_a, user_b):
    client = signed_in(user_b)
    assert client.get(f"/sessions/{session_a.pk}/note/status/").status_code == 404
    assert client.get(f"/sessions/{session_a.pk}/?note=1").status_code == 404


@pytest.mark.parametrize("path", NOTE_POSTS)
def test_it_lets_the_clinics_admin_and_clinician_use_every_note_url(draft_a, session_a, admin_a, path):
    # The clinic's admin reaches the same URLs (none answers 404 or 403).
    assert signed_in(admin_a).post(f"/sessions/{session_a.pk}/{path}", _form(draft_a)).status_code == 302


def test_it_refuses_get_on_the_note_writes(draft_a, session_a, clinician_a):
    client = signed_in(clinician_a)
    for path in NOTE_POSTS:
        assert client.get(f"/sessions/{session_a.pk}/{path}").status_code == 405
