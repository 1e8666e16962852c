"""The search box on the consultations list: the same search as REST and
the MCP tools (Japanese inside a sentence, English words), the matching
line and its time linking to the consultation, an audit row per
consultation shown, and nothing of another clinic."""

import pytest

from clinics.models import AuditEvent
from sessions.models import ConsultationSession, TranscriptSegment
from tests.web.conftest import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def ja_session(clinic_a) -> ConsultationSession:
    session = ConsultationSession.objects.create(
        clinic=clinic_a, external_ref="chart-ja", language="ja-JP", engine="fake", status="ended"
    )
    TranscriptSegment.objects.create(
        clinic=clinic_a,
        session=session,
        segment_id="j1",
        start_ms=65_000,
        end_ms=67_000,
        text="先週の火曜日から頭痛がひどいです。",
        speaker="patient",
    )
    return session


def test_it_finds_japanese_and_english_lines_with_their_time(session_a, ja_session, clinician_a):
    client = signed_in(clinician_a)
    ja = client.get("/sessions/", {"q": "頭痛"}).content.decode()
    assert "先週の火曜日から頭痛がひどいです。" in ja
    assert f'/sessions/{ja_session.pk}/#seg-j1">01:05</a>' in ja
    assert "patient reports mild headache" not in ja
    en = client.get("/sessions/", {"q": "HEADACHE"}).content.decode()
    assert "patient reports mild headache" in en and "頭痛" not in en


def test_it_audits_each_consultation_the_results_show(session_a, ja_session, clinician_a):
    signed_in(clinician_a).get("/sessions/", {"q": "頭痛"})
    [event] = AuditEvent.objects.filter(action="transcript.read")
    assert (event.object_id, event.actor_user, event.details) == (
        str(ja_session.pk),
        clinician_a,
        {"format": "search", "segments": 1, "via": "console"},
    )


def test_it_keeps_the_filters_with_a_search(session_a, ja_session, clinician_a):
    html = signed_in(clinician_a).get("/sessions/", {"q": "頭痛", "external_ref": "chart-0042"}).content.decode()
    assert "先週の火曜日" not in html
    assert "No transcript line matches." in html


def test_it_shows_clinic_b_nothing_of_clinic_a(session_a, ja_session, user_b):
    for term in ("頭痛", "headache"):
        html = signed_in(user_b).get("/sessions/", {"q": term}).content.decode()
        assert "頭痛がひどい" not in html and "mild headache" not in html
    assert not AuditEvent.objects.filter(action="transcript.read").exists()


def test_it_explains_a_query_it_cannot_search_for_in_japanese(ja_session, clinician_a):
    client = signed_in(clinician_a)
    client.cookies["django_language"] = "ja"
    html = client.get("/sessions/", {"q": '""'}, HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "検索する語句を入力してください" in html
    assert "文字起こしを検索" in html
