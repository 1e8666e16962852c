"""GET /api/v1/search/: Japanese and English transcript search over the
caller's clinic, paged, audited, and blind to other clinics."""

import pytest

from clinics.models import AuditEvent
from sessions.models import ConsultationSession, TranscriptSegment
from tests.api.conftest import error_code

pytestmark = pytest.mark.django_db


@pytest.fixture
def consultations_a(clinic_a):
    ja = ConsultationSession.objects.create(clinic=clinic_a, language="ja-JP", engine="fake", external_ref="ja-7")
    en = ConsultationSession.objects.create(clinic=clinic_a, language="en-US", engine="fake", external_ref="en-7")
    for session, segment_id, start, text in [
        (ja, "j1", 0, "先週の火曜日から頭痛がひどいです。"),
        (ja, "j2", 4000, "吐き気はありません。"),
        (en, "e1", 0, "The headache started last Tuesday."),
        (en, "e2", 3000, "No nausea."),
    ]:
        TranscriptSegment.objects.create(
            clinic=clinic_a, session=session, segment_id=segment_id, start_ms=start, end_ms=start + 2500, text=text
        )
    return ja, en


def test_it_finds_a_japanese_word_with_its_session_segment_and_time(client_a, consultations_a):
    ja, _ = consultations_a
    response = client_a.get("/api/v1/search/", {"q": "頭痛"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 1
    (hit,) = body["results"]
    assert hit["session_id"] == str(ja.pk) and hit["segment_id"] == "j1"
    assert (hit["start_ms"], hit["end_ms"]) == (0, 2500)
    assert hit["snippet"] == "先週の火曜日から頭痛がひどいです。" and hit["language"] == "ja-JP"
    assert hit["external_ref"] == "ja-7" and hit["rank"] > 0


def test_it_finds_english_words_and_filters_by_language(client_a, consultations_a):
    _, en = consultations_a
    body = client_a.get("/api/v1/search/", {"q": "headache tuesday"}).json()
    assert [(h["session_id"], h["segment_id"]) for h in body["results"]] == [(str(en.pk), "e1")]
    assert client_a.get("/api/v1/search/", {"q": "headache", "language": "ja-JP"}).json()["count"] == 0


def test_it_writes_a_transcript_read_row_per_consultation_shown(client_a, consultations_a):
    ja, _ = consultations_a
    client_a.get("/api/v1/search/", {"q": "頭痛"})
    rows = AuditEvent.objects.filter(action="transcript.read")
    assert [(r.object_id, r.details) for r in rows] == [
        (str(ja.pk), {"format": "search", "segments": 1, "via": "search"})
    ]
    assert rows[0].actor_api_key is not None


def test_clinic_b_finds_nothing_of_clinic_a(client_b, consultations_a):
    for q in ("頭痛", "headache", "Tuesday", "ない", "e"):
        response = client_b.get("/api/v1/search/", {"q": q})
        assert response.status_code == 200
        assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert not AuditEvent.objects.filter(action="transcript.read").exists()


def test_it_pages_and_bounds_the_page_size(client_a, consultations_a):
    body = client_a.get("/api/v1/search/", {"q": "。", "limit": 1}).json()
    assert body["count"] == 2 and len(body["results"]) == 1 and body["next"]
    response = client_a.get("/api/v1/search/", {"q": "頭痛", "limit": 101})
    assert response.status_code == 400 and error_code(response) == "invalid"


@pytest.mark.parametrize(
    ("params", "code"),
    [({}, "invalid"), ({"q": "  "}, "invalid"), ({"q": "x" * 201}, "invalid"), ({"q": '""'}, "invalid_query")],
)
def test_it_refuses_a_missing_or_bad_query_with_400(client_a, params, code):
    response = client_a.get("/api/v1/search/", params)
    assert response.status_code == 400 and error_code(response) == code


def test_it_needs_credentials(api_client):
    response = api_client.get("/api/v1/search/", {"q": "頭痛"})
    assert response.status_code == 401
