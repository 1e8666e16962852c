"""The low-confidence review over REST (issue 13, item 4): finals whose
engine confidence is below the clinic's threshold carry ``needs_review``
(and the session a count) until a clinician confirms them (with the
revision they read: 409 on a stale one) or corrects them; finals without a
confidence are never flagged; the threshold is a clinic admin's setting.
Audited without text; another clinic's segment is 404."""

import json

import pytest

from clinics.models import AuditEvent
from sessions.models import TranscriptSegment
from tests.api.conftest import error_code


def _confirm(session, segment_id="s2") -> str:
    return f"/api/v1/sessions/{session.pk}/segments/{segment_id}/confirm/"


@pytest.fixture
def unsure_a(session_a, segments_a) -> TranscriptSegment:
    """s2 at 0.4: below the default threshold (0.6); s1 stays at 0.93."""
    segment = segments_a[1]
    segment.confidence = 0.4
    segment.save(update_fields=["confidence"])
    TranscriptSegment.objects.create(
        clinic=session_a.clinic, session=session_a, segment_id="s4", start_ms=4000, end_ms=4500, text="mm",
        confidence=None,
    )  # fmt: skip
    return segment


def _flags(client, session) -> dict[str, bool]:
    document = client.get(f"/api/v1/sessions/{session.pk}/transcript/").json()
    return {s["segment_id"]: s["needs_review"] for s in document["segments"]} | {
        "count": document["needs_review_count"]
    }


def test_it_flags_finals_below_the_clinics_threshold_but_never_those_without_confidence(client_a, session_a, unsure_a):
    assert _flags(client_a, session_a) == {"s1": False, "s2": True, "s4": False, "count": 1}
    assert client_a.get(f"/api/v1/sessions/{session_a.pk}/").json()["needs_review_count"] == 1
    listed = client_a.get("/api/v1/sessions/").json()["results"]
    assert [s["needs_review_count"] for s in listed] == [1]
    segment = client_a.get(f"/api/v1/sessions/{session_a.pk}/segments/s2/").json()
    assert segment["needs_review"] is True and segment["reviewed_at"] is None


@pytest.mark.parametrize("client_name", ["client_a", "client_a_admin"])
def test_it_clears_the_flag_when_a_clinician_confirms_and_audits_it_without_text(
    request, session_a, unsure_a, client_name
):
    client = request.getfixturevalue(client_name)
    response = client.post(_confirm(session_a), {"revision": 0}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["needs_review"] is False and body["reviewed_by"].startswith("api-key:") and body["reviewed_at"]
    assert response["ETag"] == '"0"'
    assert _flags(client, session_a)["count"] == 0
    event = AuditEvent.objects.get(action="transcript.confirm")
    assert event.details == {"session_id": str(session_a.pk), "segment_id": "s2", "revision": 0}
    assert "better" not in json.dumps(event.details)
    # Confirming again keeps the first confirmation and writes no second row.
    assert client.post(_confirm(session_a), {}, format="json", HTTP_IF_MATCH='"0"').status_code == 200
    assert AuditEvent.objects.filter(action="transcript.confirm").count() == 1


def test_it_clears_the_flag_when_a_clinician_corrects_the_line(client_a, session_a, unsure_a):
    response = client_a.patch(
        f"/api/v1/sessions/{session_a.pk}/segments/s2/",
        {"text": "A little better, rested.", "revision": 0},
        format="json",
    )
    assert response.status_code == 200 and response.json()["needs_review"] is False
    unsure_a.refresh_from_db()
    assert unsure_a.reviewed_at is not None and unsure_a.reviewed_by.startswith("api-key:")


def test_it_refuses_a_confirmation_of_a_line_corrected_since(client_a, client_a_admin, session_a, unsure_a):
    url = f"/api/v1/sessions/{session_a.pk}/segments/s2/"
    client_a_admin.patch(url, {"text": "Admin's words.", "revision": 0}, format="json")
    response = client_a.post(_confirm(session_a), {"revision": 0}, format="json")
    assert response.status_code == 409 and error_code(response) == "revision_conflict"
    assert response.json()["error"]["details"] == {"revision": 1}
    assert not AuditEvent.objects.filter(action="transcript.confirm").exists()


@pytest.mark.parametrize(
    ("body", "headers", "code"),
    [
        ({}, {}, "revision_required"),
        ({"revision": -1}, {}, "invalid"),
        ({"revision": "0"}, {}, "invalid"),
        ({"revision": 0, "text": "x"}, {}, "unknown_field"),
        ({}, {"HTTP_IF_MATCH": "*"}, "invalid"),
    ],
)
def test_it_answers_400_to_a_bad_confirmation(client_a, session_a, unsure_a, body, headers, code):
    response = client_a.post(_confirm(session_a), body, format="json", **headers)
    assert response.status_code == 400 and error_code(response) == code
    unsure_a.refresh_from_db()
    assert unsure_a.reviewed_at is None


def test_it_answers_404_for_another_clinics_segment(client_b, session_a, unsure_a):
    response = client_b.post(_confirm(session_a), {"revision": 0}, format="json")
    assert response.status_code == 404 and error_code(response) == "not_found"
    unsure_a.refresh_from_db()
    assert unsure_a.reviewed_at is None


@pytest.mark.parametrize("segment_id", ["s3", "nope"])  # s3 is an interim result
def test_it_answers_404_for_a_segment_that_is_not_a_stored_final(client_a, session_a, unsure_a, segment_id):
    assert client_a.post(_confirm(session_a, segment_id), {"revision": 0}, format="json").status_code == 404


def test_it_lets_a_clinic_admin_set_the_threshold_and_not_a_clinician(client_a, client_a_admin, session_a, unsure_a):
    assert client_a.get("/api/v1/clinic/").json()["low_confidence_threshold"] == 0.6
    response = client_a_admin.patch("/api/v1/clinic/", {"low_confidence_threshold": 0.95}, format="json")
    assert response.status_code == 200 and response.json()["low_confidence_threshold"] == 0.95
    assert _flags(client_a, session_a)["count"] == 2  # s1 (0.93) is below 0.95 too
    assert AuditEvent.objects.filter(action="clinic.update").exists()
    assert client_a_admin.patch("/api/v1/clinic/", {"low_confidence_threshold": 0}, format="json").status_code == 200
    assert _flags(client_a, session_a)["count"] == 0
    for bad in (1.5, -0.1, "0.5", True):
        response = client_a_admin.patch("/api/v1/clinic/", {"low_confidence_threshold": bad}, format="json")
        assert response.status_code == 400, bad
    assert client_a.patch("/api/v1/clinic/", {"low_confidence_threshold": 0.9}, format="json").status_code == 403


def test_it_flags_by_each_clinics_own_threshold(client_a, client_b, clinic_a, clinic_b, session_a, unsure_a):
    assert client_b.patch("/api/v1/clinic/", {"low_confidence_threshold": 0.99}, format="json").status_code == 200
    clinic_a.refresh_from_db()
    clinic_b.refresh_from_db()
    assert (clinic_a.low_confidence_threshold, clinic_b.low_confidence_threshold) == (0.6, 0.99)
    assert _flags(client_a, session_a)["count"] == 1
