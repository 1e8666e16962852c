"""Clinicians' corrections of finals over REST: each a new revision (who,
when, before, after) with the engine's text kept; every transcript read,
download, export and search uses the latest revision and the JSON can carry
the history; a correction from a stale read is refused with 409; audited
without the text; another clinic's segment is 404."""

import json

import pytest
from django.core.files.storage import default_storage

from clinics.models import AuditEvent
from sessions import storage_keys
from sessions.models import SegmentRevision
from tests.api.conftest import error_code


def _url(session, segment_id="s1") -> str:
    return f"/api/v1/sessions/{session.pk}/segments/{segment_id}/"


def test_it_corrects_a_final_as_a_new_revision_keeping_the_engines_text(client_a, session_a, segments_a, key_a):
    response = client_a.patch(_url(session_a), {"text": "Good morning, how do you feel?", "revision": 0}, format="json")
    assert response.status_code == 200, response.content
    assert response["ETag"] == '"1"'
    body = response.json()
    assert body["text"] == "Good morning, how do you feel?" and body["revision"] == 1
    assert body["original_text"] == "Good morning, how are you feeling?"
    [revision] = body["revisions"]
    assert revision["text_before"] == "Good morning, how are you feeling?"
    assert revision["text_after"] == "Good morning, how do you feel?"
    assert revision["revision"] == 1 and revision["edited_by"].startswith("api-key:") and revision["edited_at"]
    event = AuditEvent.objects.get(action="transcript.correct")
    assert event.details == {"session_id": str(session_a.pk), "segment_id": "s1", "revision": 1}
    assert "feel" not in json.dumps(event.details)


def test_it_serves_the_latest_revision_everywhere_and_the_history_on_request(client_a, session_a, segments_a):
    client_a.patch(_url(session_a), {"text": "First fix.", "revision": 0}, format="json")
    client_a.patch(_url(session_a), {"text": "Second fix."}, format="json", HTTP_IF_MATCH='"1"')
    plain = client_a.get(f"/api/v1/sessions/{session_a.pk}/transcript/").json()
    assert plain["segments"][0]["text"] == "Second fix."
    assert plain["segments"][0]["revision"] == 2 and "revisions" not in plain["segments"][0]
    for fmt in ("txt", "vtt", "srt"):
        text = client_a.get(f"/api/v1/sessions/{session_a.pk}/transcript/?format={fmt}").content.decode()
        assert "Second fix." in text and "how are you feeling" not in text, fmt
    full = client_a.get(f"/api/v1/sessions/{session_a.pk}/transcript/?history=true").json()
    first, second = full["segments"]
    assert first["original_text"] == "Good morning, how are you feeling?"
    assert [(r["revision"], r["text_after"]) for r in first["revisions"]] == [(1, "First fix."), (2, "Second fix.")]
    assert second["original_text"] == second["text"] and second["revisions"] == []
    hits = client_a.get("/api/v1/search/?q=Second").json()["results"]
    assert [h["segment_id"] for h in hits] == ["s1"]
    assert client_a.get("/api/v1/search/?q=feeling").json()["results"] == []


def test_it_refuses_a_correction_made_from_a_stale_read(client_a, client_a_admin, session_a, segments_a):
    assert (
        client_a_admin.patch(_url(session_a), {"text": "Admin's fix.", "revision": 0}, format="json").status_code == 200
    )
    response = client_a.patch(_url(session_a), {"text": "Clinician's fix.", "revision": 0}, format="json")
    assert response.status_code == 409 and error_code(response) == "revision_conflict"
    assert response.json()["error"]["details"] == {"revision": 1}
    stale = client_a.patch(_url(session_a), {"text": "Clinician's fix."}, format="json", HTTP_IF_MATCH='"0"')
    assert stale.status_code == 409
    assert client_a.get(_url(session_a)).json()["text"] == "Admin's fix."
    assert SegmentRevision.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "headers", "code"),
    [
        ({"text": "x"}, {}, "revision_required"),
        ({"text": "x"}, {"HTTP_IF_MATCH": "*"}, "invalid"),
        ({"text": "", "revision": 0}, {}, "invalid"),
        ({"text": "   ", "revision": 0}, {}, "invalid"),
        ({"text": 5, "revision": 0}, {}, "invalid"),
        ({"text": "x", "revision": -1}, {}, "invalid"),
        ({"text": "x", "revision": True}, {}, "invalid"),
        ({"text": "x" * 10_001, "revision": 0}, {}, "invalid"),
        ({"revision": 0}, {}, "invalid"),
    ],
)
def test_it_answers_400_to_a_bad_correction(client_a, session_a, segments_a, body, headers, code):
    response = client_a.patch(_url(session_a), body, format="json", **headers)
    assert response.status_code == 400 and error_code(response) == code
    assert not SegmentRevision.objects.exists()


def test_it_answers_400_to_a_bad_history_flag(client_a, session_a, segments_a):
    response = client_a.get(f"/api/v1/sessions/{session_a.pk}/transcript/?history=maybe")
    assert response.status_code == 400 and error_code(response) == "invalid"


@pytest.mark.parametrize("method", ["get", "patch"])
def test_it_answers_404_for_another_clinics_segment(client_b, session_a, segments_a, method):
    response = getattr(client_b, method)(_url(session_a), {"text": "x", "revision": 0}, format="json")
    assert response.status_code == 404 and error_code(response) == "not_found"
    assert not SegmentRevision.objects.exists()


@pytest.mark.parametrize("segment_id", ["s3", "nope"])  # s3 is an interim result
def test_it_answers_404_for_a_segment_that_is_not_a_stored_final(client_a, session_a, segments_a, segment_id):
    response = client_a.patch(_url(session_a, segment_id), {"text": "x", "revision": 0}, format="json")
    assert response.status_code == 404


def test_it_audits_reading_one_segment(client_a, session_a, segments_a):
    response = client_a.get(_url(session_a))
    assert response.status_code == 200 and response["ETag"] == '"0"'
    assert response.json()["revisions"] == []
    event = AuditEvent.objects.get(action="transcript.read", object_id=str(session_a.pk))
    assert event.details["format"] == "segment"


def test_it_rewrites_a_sealed_sessions_transcript_json(client_a, session_a, segments_a, tmp_media):
    session_a.audio_sha256 = "0" * 64
    session_a.save(update_fields=["audio_sha256"])
    assert client_a.patch(_url(session_a), {"text": "Sealed fix.", "revision": 0}, format="json").status_code == 200
    with default_storage.open(storage_keys.transcript_json_key(session_a)) as fh:
        stored = json.load(fh)
    assert stored["segments"][0]["text"] == "Sealed fix." and stored["segments"][0]["revision"] == 1


def test_it_erases_corrections_with_the_session_counting_segments_alone(
    client_a, client_a_admin, session_a, segments_a, tmp_media
):
    client_a.patch(_url(session_a), {"text": "Fix.", "revision": 0}, format="json")
    assert client_a_admin.delete(f"/api/v1/sessions/{session_a.pk}/").status_code == 204
    assert not SegmentRevision.objects.exists()
    tombstone = AuditEvent.objects.get(action="session.erase", object_id=str(session_a.pk))
    assert tombstone.details["segments"] == 3
