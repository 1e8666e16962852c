"""Speaker roles and the low-confidence review on the consultation's page:
flagged lines are highlighted and listed first with a way to confirm them;
a confirmation from a page loaded before someone's correction is refused;
the speakers' roles show on each line and can be changed; no labels, no
speakers panel. Another clinic's consultation is 404 for both actions."""

import pytest

from clinics.models import AuditEvent
from sessions.models import TranscriptSegment
from tests.web.conftest import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled_a(session_a) -> list[TranscriptSegment]:
    """s0 spoken by spk_0 with confidence 0.3 (flagged), s1 by spk_1 at 0.97."""
    segments = list(TranscriptSegment.objects.filter(session=session_a).order_by("start_ms"))
    for segment, speaker, confidence in zip(segments, ["spk_0", "spk_1"], [0.3, 0.97], strict=True):
        segment.speaker, segment.confidence = speaker, confidence
        segment.save(update_fields=["speaker", "confidence"])
    return segments


def _confirm(client, session, segment_id="s0", revision=0):
    return client.post(f"/sessions/{session.pk}/confirmations/", {"segment_id": segment_id, "revision": revision})


def test_it_lists_unsure_lines_first_and_confirms_them(session_a, clinician_a, labelled_a):
    client = signed_in(clinician_a)
    page = client.get(f"/sessions/{session_a.pk}/").content.decode()
    assert 'id="review"' in page and "Check these lines first" in page and 'href="#seg-s0"' in page
    assert page.count('class="final needs-review"') == 1 and "Confirm as heard" in page
    response = _confirm(client, session_a)
    assert response.status_code == 302 and response["Location"].endswith("#review")
    segment = TranscriptSegment.objects.get(session=session_a, segment_id="s0")
    assert segment.reviewed_by == f"user:{clinician_a.pk}" and segment.reviewed_at is not None
    event = AuditEvent.objects.get(action="transcript.confirm")
    assert "headache" not in str(event.details)
    page = client.get(f"/sessions/{session_a.pk}/").content.decode()
    assert "needs-review" not in page and "Check these lines first" not in page and "badge confirmed" in page


def test_it_refuses_a_confirmation_from_a_stale_page(session_a, clinician_a, admin_a, labelled_a):
    admin = signed_in(admin_a)
    admin.post(f"/sessions/{session_a.pk}/corrections/", {"segment_id": "s0", "text": "mild headache", "revision": 0})
    client = signed_in(clinician_a)
    response = _confirm(client, session_a, revision=0)
    assert response.status_code == 302
    assert not AuditEvent.objects.filter(action="transcript.confirm").exists()
    page = client.get(f"/sessions/{session_a.pk}/", follow=True).content.decode()
    assert "needs-review" not in page  # the correction itself cleared the flag


def test_it_shows_and_changes_the_speakers_roles(session_a, clinician_a, labelled_a):
    client = signed_in(clinician_a)
    page = client.get(f"/sessions/{session_a.pk}/").content.decode()
    assert 'id="speakers"' in page and "A first guess" in page
    assert "Clinician (spk_0)" in page
    response = client.post(f"/sessions/{session_a.pk}/speakers/", {"role-spk_0": "patient", "role-spk_1": "clinician"})
    assert response.status_code == 302
    session_a.refresh_from_db()
    assert session_a.speaker_roles == {"spk_0": "patient", "spk_1": "clinician"}
    assert AuditEvent.objects.filter(action="session.speaker_roles").exists()
    page = client.get(f"/sessions/{session_a.pk}/").content.decode()
    assert "Patient (spk_0)" in page and "Clinician (spk_1)" in page and "A first guess" not in page


def test_it_shows_the_roles_in_japanese(session_a, clinician_a, labelled_a):
    client = signed_in(clinician_a)
    page = client.get(f"/sessions/{session_a.pk}/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "医師 (spk_0)" in page and "話者" in page and "まずこれらの行を確認してください" in page


def test_it_refuses_an_unknown_role_and_keeps_the_mapping(session_a, clinician_a, labelled_a):
    client = signed_in(clinician_a)
    assert client.post(f"/sessions/{session_a.pk}/speakers/", {"role-spk_0": "doctor"}).status_code == 302
    session_a.refresh_from_db()
    assert session_a.speaker_roles == {}


def test_it_shows_no_speakers_panel_without_labels(session_a, clinician_a):
    page = signed_in(clinician_a).get(f"/sessions/{session_a.pk}/").content.decode()
    assert 'id="speakers"' not in page and "needs-review" not in page  # no confidence: never flagged


@pytest.mark.parametrize("path", ["confirmations", "speakers"])
def test_it_answers_404_for_another_clinics_consultation(session_a, user_b, labelled_a, path):
    response = signed_in(user_b).post(
        f"/sessions/{session_a.pk}/{path}/", {"segment_id": "s0", "revision": 0, "role-spk_0": "patient"}
    )
    assert response.status_code == 404
    session_a.refresh_from_db()
    assert session_a.speaker_roles == {}
    assert not TranscriptSegment.objects.filter(session=session_a, reviewed_at__isnull=False).exists()


def test_it_keeps_a_role_set_for_a_label_not_heard_yet(session_a, clinician_a, labelled_a):
    session_a.speaker_roles = {"spk_7": "family"}
    session_a.save(update_fields=["speaker_roles"])
    signed_in(clinician_a).post(f"/sessions/{session_a.pk}/speakers/", {"role-spk_0": "clinician", "role-spk_1": ""})
    session_a.refresh_from_db()
    assert session_a.speaker_roles == {"spk_0": "clinician", "spk_7": "family"}
