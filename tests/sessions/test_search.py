"""Transcript search (sessions/search.py) on the suite's PostgreSQL: Japanese
inside a sentence, English words and phrases, finals only, one clinic."""

import pytest
from django.db import connection

from sessions.models import ConsultationSession, TranscriptSegment
from sessions.search import (
    InvalidSearchQuery,
    search_hit,
    search_query_parse,
    snippet,
    transcript_search,
)

pytestmark = pytest.mark.django_db


def _session(clinic, *, language: str, ref: str = "") -> ConsultationSession:
    return ConsultationSession.objects.create(clinic=clinic, language=language, engine="fake", external_ref=ref)


def _segment(session, segment_id: str, text: str, *, start_ms: int = 0, final: bool = True) -> TranscriptSegment:
    return TranscriptSegment.objects.create(
        clinic=session.clinic,
        session=session,
        segment_id=segment_id,
        start_ms=start_ms,
        end_ms=start_ms + 2000,
        text=text,
        speaker="patient",
        is_final=final,
    )


@pytest.fixture
def ja_session(clinic_a):
    session = _session(clinic_a, language="ja-JP", ref="ja-1")
    _segment(session, "j1", "今日はどうされましたか。", start_ms=0)
    _segment(session, "j2", "先週の火曜日から頭痛がひどくて、夜も眠れません。", start_ms=2500)
    _segment(session, "j3", "頭痛", start_ms=5000)
    _segment(session, "j4", "熱はありません。", start_ms=7000)
    return session


@pytest.fixture
def en_session(clinic_a):
    session = _session(clinic_a, language="en-US", ref="en-1")
    _segment(session, "e1", "What brings you in today?", start_ms=0)
    _segment(session, "e2", "I have had a Headache since last Tuesday and chest pain at night.", start_ms=2500)
    _segment(session, "e3", "Pain in the chest, sometimes.", start_ms=6000)
    _segment(session, "e4", "headache headache", start_ms=9000, final=False)  # interim: never searched
    return session


def _ids(qs) -> list[str]:
    return [segment.segment_id for segment in qs]


def test_it_finds_japanese_words_inside_a_sentence(principal_admin_a, ja_session):
    found = _ids(transcript_search(principal=principal_admin_a, query=search_query_parse("頭痛")))
    assert sorted(found) == ["j2", "j3"]
    assert found[0] == "j3"  # the segment the word makes up most of ranks first


def test_it_finds_a_longer_japanese_phrase(principal_admin_a, ja_session):
    assert _ids(transcript_search(principal=principal_admin_a, query=search_query_parse("火曜日から頭痛"))) == ["j2"]
    assert _ids(transcript_search(principal=principal_admin_a, query=search_query_parse("腹痛"))) == []


def test_it_finds_english_words_case_insensitively_and_needs_every_term(principal_admin_a, en_session):
    assert _ids(transcript_search(principal=principal_admin_a, query=search_query_parse("headache"))) == ["e2"]
    assert sorted(_ids(transcript_search(principal=principal_admin_a, query=search_query_parse("chest pain")))) == [
        "e2",
        "e3",
    ]
    assert _ids(transcript_search(principal=principal_admin_a, query=search_query_parse('"chest pain"'))) == ["e2"]
    assert _ids(transcript_search(principal=principal_admin_a, query=search_query_parse("chest tuesday"))) == ["e2"]


def test_it_never_searches_interim_segments(principal_admin_a, en_session):
    found = _ids(transcript_search(principal=principal_admin_a, query=search_query_parse("headache headache")))
    assert "e4" not in found


def test_it_searches_only_the_principals_clinic(principal_b, ja_session, en_session):
    for q in ("頭痛", "headache", "chest pain"):
        assert _ids(transcript_search(principal=principal_b, query=search_query_parse(q))) == []


def test_it_filters_by_the_sessions_language_and_reference(principal_admin_a, ja_session, en_session):
    query = search_query_parse("a")  # matches English and not Japanese text alike
    assert set(s.session.language for s in transcript_search(principal=principal_admin_a, query=query)) == {"en-US"}
    assert (
        _ids(transcript_search(principal=principal_admin_a, query=search_query_parse("頭痛"), external_ref="en-1"))
        == []
    )
    assert (
        _ids(transcript_search(principal=principal_admin_a, query=search_query_parse("頭痛"), language="en-US")) == []
    )


def test_it_treats_like_wildcards_as_plain_characters(principal_admin_a, en_session):
    assert _ids(transcript_search(principal=principal_admin_a, query=search_query_parse("%"))) == []
    assert _ids(transcript_search(principal=principal_admin_a, query=search_query_parse("_"))) == []


def test_a_hit_says_where_to_jump(principal_admin_a, ja_session):
    segment = transcript_search(principal=principal_admin_a, query=search_query_parse("火曜日"))[0]
    hit = search_hit(segment, search_query_parse("火曜日"))
    assert hit.session_id == str(ja_session.pk) and hit.segment_id == "j2"
    assert (hit.start_ms, hit.end_ms) == (2500, 4500)
    assert "火曜日" in hit.snippet and hit.rank > 0 and hit.language == "ja-JP" and hit.external_ref == "ja-1"


@pytest.mark.parametrize(
    ("raw", "terms"),
    [
        ("頭痛", ("頭痛",)),
        ("頭痛\u3000発熱", ("頭痛", "発熱")),  # the ideographic space separates terms
        ('"chest pain" night', ("chest pain", "night")),
        ("Pain pain", ("Pain",)),
    ],
)
def test_it_parses_terms_and_phrases(raw, terms):
    assert search_query_parse(raw).terms == terms


@pytest.mark.parametrize("raw", ["", "   ", '""', "x" * 201, " ".join(f"w{i}" for i in range(9)), None, 5])
def test_it_refuses_empty_oversized_or_non_text_queries(raw):
    with pytest.raises(InvalidSearchQuery) as caught:
        search_query_parse(raw)
    assert caught.value.code == "invalid_query"


def test_a_snippet_is_bounded_and_shows_the_match():
    text = "あ" * 300 + "頭痛" + "い" * 300
    cut = snippet(text, ("頭痛",))
    assert "頭痛" in cut and cut.startswith("…") and cut.endswith("…") and len(cut) <= 162


@pytest.mark.django_db(transaction=True)
def test_the_trigram_index_answers_terms_of_three_characters(principal_admin_a, ja_session):
    """The selector's own SQL (UPPER(text) LIKE …) matches the index's
    expression: with a clinic of a few thousand segments the planner picks it."""
    if connection.vendor != "postgresql":
        pytest.skip("the trigram index exists on PostgreSQL only")
    filler = [
        TranscriptSegment(
            clinic=ja_session.clinic,
            session=ja_session,
            segment_id=f"f{i}",
            start_ms=10_000 + i,
            end_ms=10_001 + i,
            text=f"お大事にしてください。番号{i}",
        )
        for i in range(3000)
    ]
    TranscriptSegment.objects.bulk_create(filler)
    sql, params = transcript_search(
        principal=principal_admin_a, query=search_query_parse("火曜日")
    ).query.sql_with_params()
    with connection.cursor() as cursor:
        # As autovacuum would: new rows wait in the GIN index's pending list
        # (which the planner prices as a scan) until a vacuum merges them.
        cursor.execute("VACUUM ANALYZE consultations_transcriptsegment")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "consultations_segment_text_trgm" in plan, plan
