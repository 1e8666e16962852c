"""The clinician edits the draft (preconditions like segment corrections:
version and revision, 409 when stale), then signs it; a signed version is
immutable — an edit makes the next version, which supersedes it when
signed — and the signed one is what integrators fetch. Every step is
audited without the note's text."""

import json

from clinics.models import AuditEvent
from notes.models import ClinicalNote, NoteStatus
from tests.api.conftest import error_code


def _url(session, tail: str = "") -> str:
    return f"/api/v1/sessions/{session.pk}/note/{tail}"


def _sentences(body, key: str) -> list[dict]:
    return next(s for s in body["sections"] if s["key"] == key)["sentences"]


def _edit_body(body: dict, **overrides) -> dict:
    sections = {s["key"]: [{"id": x["id"], "text": x["text"]} for x in s["sentences"]] for s in body["sections"]}
    sections.update(overrides)
    return {"version": body["version"], "revision": body["revision"], "sections": sections}


def test_it_edits_a_draft_keeping_the_evidence_of_rewritten_sentences(client_a, drafted):
    body = client_a.get(_url(drafted)).json()
    plan = _sentences(body, "plan")[0]
    edit = _edit_body(
        body,
        plan=[{"id": plan["id"], "text": "ECG today; follow-up in 2 weeks."}, {"text": "Low-salt diet."}],
        objective=[],
    )
    response = client_a.put(_url(drafted), edit, format="json")
    assert response.status_code == 200, response.content
    after = response.json()
    assert (after["version"], after["revision"], after["status"]) == (1, 1, "draft")
    rewritten, added = _sentences(after, "plan")
    assert rewritten["id"] == plan["id"] and rewritten["edited"] is True
    assert rewritten["evidence"] == plan["evidence"] and rewritten["evidence"]
    assert added["edited"] is True and added["evidence"] == [] and added["start_ms"] is None
    assert _sentences(after, "objective") == []
    assert after["edited_by"].startswith("api-key:") and after["edited_at"]


def test_it_refuses_an_edit_or_signature_from_a_stale_read(client_a, client_a_admin, drafted):
    body = client_a.get(_url(drafted)).json()
    assert client_a_admin.put(_url(drafted), _edit_body(body, objective=[]), format="json").status_code == 200
    stale = client_a.put(_url(drafted), _edit_body(body, plan=[]), format="json")
    assert stale.status_code == 409 and error_code(stale) == "note_conflict"
    assert stale.json()["error"]["details"] == {"version": 1, "revision": 1}
    sign = client_a.post(_url(drafted, "sign/"), {"version": 1, "revision": 0}, format="json")
    assert sign.status_code == 409 and error_code(sign) == "note_conflict"


def test_it_refuses_evidence_it_did_not_link_and_unknown_sentences(client_a, drafted):
    body = client_a.get(_url(drafted)).json()
    forged = _edit_body(body, plan=[{"text": "x", "evidence": ["seg-1"]}])
    assert client_a.put(_url(drafted), forged, format="json").status_code == 400
    unknown = client_a.put(_url(drafted), _edit_body(body, plan=[{"id": "n999", "text": "x"}]), format="json")
    assert unknown.status_code == 400 and "sections.plan[0]" in unknown.json()["error"]["details"]
    wrong_key = client_a.put(_url(drafted), {"version": 1, "revision": 0, "sections": {"soap": []}}, format="json")
    assert wrong_key.status_code == 400
    missing = client_a.put(_url(drafted), {"sections": {}}, format="json")
    assert missing.status_code == 400


def test_it_signs_a_draft_which_then_never_changes(client_a, drafted):
    body = client_a.get(_url(drafted)).json()
    signed = client_a.post(_url(drafted, "sign/"), {"version": 1, "revision": 0}, format="json")
    assert signed.status_code == 200, signed.content
    assert signed.json()["status"] == "signed" and signed.json()["signed_by"].startswith("api-key:")
    again = client_a.post(_url(drafted, "sign/"), {"version": 1, "revision": 0}, format="json")
    assert again.status_code == 200 and again.json()["signed_at"] == signed.json()["signed_at"]
    before = ClinicalNote.objects.get(session=drafted, version=1).sections
    # An edit of the signed version is a new version, a draft that supersedes it.
    edited = client_a.put(_url(drafted), _edit_body(body, assessment=[]), format="json").json()
    assert (edited["version"], edited["revision"], edited["status"], edited["supersedes_version"]) == (
        2, 0, "draft", 1,
    )  # fmt: skip
    v1 = ClinicalNote.objects.get(session=drafted, version=1)
    assert v1.status == NoteStatus.SIGNED and v1.sections == before
    # Integrators still get version 1 until version 2 is signed.
    assert client_a.get(_url(drafted) + "?signed=true").json()["version"] == 1
    assert client_a.post(_url(drafted, "sign/"), {"version": 2, "revision": 0}, format="json").status_code == 200
    v1.refresh_from_db()
    assert v1.status == NoteStatus.SUPERSEDED and v1.sections == before
    latest = client_a.get(_url(drafted) + "?signed=true").json()
    assert latest["version"] == 2 and latest["latest_signed_version"] == 2
    assert [(v["version"], v["status"]) for v in latest["versions"]] == [(2, "signed"), (1, "superseded")]
    old = client_a.get(_url(drafted) + "?version=1").json()
    assert old["status"] == "superseded" and _sentences(old, "assessment")


def test_it_makes_a_new_draft_on_request_after_a_signed_version(client_a, drafted, run_jobs):
    client_a.post(_url(drafted, "sign/"), {"version": 1, "revision": 0}, format="json")
    response = client_a.post(_url(drafted, "generate/"), {}, format="json")
    assert response.status_code == 202 and response.json()["version"] == 2
    run_jobs()
    assert client_a.get(_url(drafted)).json()["status"] == "draft"
    assert ClinicalNote.objects.get(session=drafted, version=1).status == NoteStatus.SIGNED


def test_it_will_not_edit_or_sign_while_generating(client_a, en_session):
    client_a.post(_url(en_session, "generate/"), {}, format="json")
    edit = client_a.put(_url(en_session), {"version": 1, "revision": 0, "sections": {}}, format="json")
    assert edit.status_code == 409 and error_code(edit) == "note_generating"
    sign = client_a.post(_url(en_session, "sign/"), {"version": 1, "revision": 0}, format="json")
    assert sign.status_code == 409 and error_code(sign) == "note_generating"
    retry = client_a.post(_url(en_session, "retry/"))
    assert retry.status_code == 409 and error_code(retry) == "note_not_failed"


def test_it_answers_404_and_409_for_missing_notes(client_a, en_session):
    missing = client_a.get(_url(en_session))
    assert missing.status_code == 404 and error_code(missing) == "note_not_found"
    assert client_a.get(_url(en_session, "text/")).status_code == 404
    assert client_a.get(_url(en_session) + "?version=abc").status_code == 400


def test_it_serves_signed_notes_only_to_integrators_fetching_the_signed_one(client_a, drafted):
    for path in ("text/", "fhir/"):
        response = client_a.get(_url(drafted, path))
        assert response.status_code == 409 and error_code(response) == "note_not_signed", path
    assert client_a.get(_url(drafted) + "?signed=true").status_code == 409


def client_key_prefix(client) -> str:
    return client._credentials["HTTP_AUTHORIZATION"].split("_")[1]


def test_it_audits_every_step_without_the_text(client_a, drafted, clinician_a):
    body = client_a.get(_url(drafted)).json()
    client_a.put(_url(drafted), _edit_body(body, objective=[]), format="json")
    client_a.post(_url(drafted, "sign/"), {"version": 1, "revision": 1}, format="json")
    client_a.get(_url(drafted, "text/"))
    events = AuditEvent.objects.filter(object_type="clinical_note").order_by("id")
    key_label = f"api-key:{client_key_prefix(client_a)}"
    assert [(e.action, e.actor_label) for e in events] == [
        ("note.generate", f"user:{clinician_a.pk}"),
        ("note.write", "system:notes"),
        ("note.read", key_label),
        ("note.edit", key_label),
        ("note.sign", key_label),
        ("note.read", key_label),
    ]
    assert events[5].details["format"] == "text"
    assert events[4].details == {"session_id": str(drafted.pk), "version": 1, "revision": 1}
    transcript_reads = AuditEvent.objects.filter(action="transcript.read", details__format="note")
    assert transcript_reads.count() == 1 and transcript_reads[0].actor_label == "system:notes"
    everything = json.dumps([e.details for e in AuditEvent.objects.all()])
    assert "chest pain" not in everything and "ECG" not in everything
