"""Correcting a final on the consultation's page: a new revision with the
original kept, marked as corrected; a correction from a page loaded before
someone else's is refused and says so; another clinic's consultation is 404."""

import pytest

from clinics.models import AuditEvent
from sessions.models import SegmentRevision, TranscriptSegment
from tests.web.conftest import signed_in

pytestmark = pytest.mark.django_db


def _correct(client, session, segment_id, text, revision):
    return client.post(
        f"/sessions/{session.pk}/corrections/", {"segment_id": segment_id, "text": text, "revision": revision}
    )


def test_it_corrects_a_line_and_marks_it_corrected(session_a, clinician_a):
    client = signed_in(clinician_a)
    page = client.get(f"/sessions/{session_a.pk}/").content.decode()
    assert 'name="revision" value="0"' in page and "badge corrected" not in page
    response = _correct(client, session_a, "s0", "patient reports a mild headache", 0)
    assert response.status_code == 302
    segment = TranscriptSegment.objects.get(session=session_a, segment_id="s0")
    assert segment.text == "patient reports a mild headache" and segment.revision == 1
    revision = SegmentRevision.objects.get(segment=segment)
    assert revision.text_before == "patient reports mild headache" and revision.edited_by == f"user:{clinician_a.pk}"
    assert AuditEvent.objects.filter(action="transcript.correct").exists()
    page = client.get(f"/sessions/{session_a.pk}/").content.decode()
    assert "badge corrected" in page and "patient reports a mild headache" in page


def test_it_refuses_a_correction_from_a_stale_page(session_a, clinician_a, admin_a):
    assert _correct(signed_in(admin_a), session_a, "s0", "admin's words", 0).status_code == 302
    client = signed_in(clinician_a)
    response = _correct(client, session_a, "s0", "clinician's words", 0)
    assert response.status_code == 302
    assert TranscriptSegment.objects.get(session=session_a, segment_id="s0").text == "admin's words"
    page = client.get(f"/sessions/{session_a.pk}/").content.decode()
    assert "Someone corrected this line meanwhile" in page


@pytest.mark.parametrize(("text", "revision"), [("", 0), ("ok", "x")])
def test_it_keeps_the_line_for_bad_input(session_a, clinician_a, text, revision):
    assert _correct(signed_in(clinician_a), session_a, "s0", text, revision).status_code == 302
    assert not SegmentRevision.objects.exists()


def test_it_answers_404_for_another_clinics_consultation(session_a, user_b):
    assert _correct(signed_in(user_b), session_a, "s0", "x", 0).status_code == 404
    assert not SegmentRevision.objects.exists()
