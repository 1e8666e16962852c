"""Transcript search over a clinic's finals, for ja-JP and en-US alike.

PostgreSQL's full-text search splits words on spaces and punctuation;
Japanese has neither between words, so a parser-based search finds nothing
inside a sentence. Instead every term is matched as a substring
(``icontains``: ``UPPER(text) LIKE UPPER('%term%')``), which the pg_trgm GIN
index on ``UPPER(text)`` (migration 0002) answers for terms of three
characters or more; shorter terms (most two-kanji words: 頭痛, 発熱) are
checked on the clinic's rows the (clinic, session) index finds. On SQLite
(``make run``) the same query runs without an index.

Ranking is the share of the segment the matches make up (``_coverage``),
the same on both databases. Not pg_trgm's ``similarity``: it pads trigrams
at word edges and a Japanese sentence is one "word" to it, so a word in the
middle of a sentence scores 0 (similarity('先週の火曜日から頭痛がひどいです',
'頭痛') = 0). Method and measured numbers: docs/search.md.

Reads only: the caller writes the ``transcript.read`` audit rows for the
hits it shows (``sessions.services.transcript_search_audit``).
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import F, FloatField, QuerySet, Value
from django.db.models.functions import Cast, Length, NullIf, Replace, Upper

from clinics.access import Principal, transcript_segments_visible_to
from sessions.models import TranscriptSegment
from voiceai.errors import InvalidInput

QUERY_MAX_CHARS = 200
QUERY_MAX_TERMS = 8
SNIPPET_CHARS = 160

# A quoted phrase ("chest pain") is one term; anything else splits on
# whitespace, the ideographic space (U+3000) included.
_TERM = re.compile(r'"([^"]+)"|(\S+)')


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    terms: tuple[str, ...]


class InvalidSearchQuery(InvalidInput):
    code = "invalid_query"
    default_message = "The search query is not valid."


def search_query_parse(raw: object) -> SearchQuery:
    """Terms of a query (words, or phrases in double quotes); every term
    must occur in a segment. Raises InvalidSearchQuery for an empty, too
    long or too many-termed query."""
    if not isinstance(raw, str):
        raise InvalidSearchQuery("q must be a string.", details={"q": "A string."})
    text = raw.strip()
    if len(text) > QUERY_MAX_CHARS:
        raise InvalidSearchQuery(
            f"q may be at most {QUERY_MAX_CHARS} characters.", details={"q": f"At most {QUERY_MAX_CHARS} characters."}
        )
    terms: list[str] = []
    for match in _TERM.finditer(text):
        # A stray quote is not something to search for.
        term = (match.group(1) or (match.group(2) or "").strip('"')).strip()
        if term and term.casefold() not in {t.casefold() for t in terms}:
            terms.append(term)
    if not terms:
        raise InvalidSearchQuery("q must contain a word or phrase to search for.", details={"q": "Required."})
    if len(terms) > QUERY_MAX_TERMS:
        raise InvalidSearchQuery(
            f"q may have at most {QUERY_MAX_TERMS} terms.", details={"q": f"At most {QUERY_MAX_TERMS} terms."}
        )
    return SearchQuery(text=" ".join(terms), terms=tuple(terms))


def transcript_search(
    *,
    principal: Principal,
    query: SearchQuery,
    status: str | None = None,
    language: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    external_ref: str | None = None,
) -> QuerySet[TranscriptSegment]:
    """The clinic's final segments containing every term, best first (then
    newest consultation, then time in it), annotated with ``rank``. The
    session filters are those of ``session_list``."""
    qs = transcript_segments_visible_to(principal).filter(is_final=True)
    for term in query.terms:
        qs = qs.filter(text__icontains=term)
    if status:
        qs = qs.filter(session__status=status)
    if language:
        qs = qs.filter(session__language=language)
    if created_after is not None:
        qs = qs.filter(session__created_at__gte=created_after)
    if created_before is not None:
        qs = qs.filter(session__created_at__lt=created_before)
    if external_ref:
        qs = qs.filter(session__external_ref=external_ref)
    qs = qs.annotate(rank=_coverage(query.terms))
    return qs.select_related("session").order_by("-rank", "-session__created_at", "session_id", "start_ms", "id")


def _coverage(terms: tuple[str, ...]) -> Any:
    """The share of the segment's characters its matches make up, in SQL
    (the same on PostgreSQL and SQLite): each term's occurrences times its
    length, over the segment's length. A short segment that is mostly the
    query comes before a long one that mentions it once."""
    text = Upper(F("text"))
    covered: Any = Value(0)
    for term in terms:
        covered = covered + (Length(text) - Length(Replace(text, Upper(Value(term)), Value(""))))
    return Cast(covered, FloatField()) / Cast(NullIf(Length(F("text")), 0), FloatField())


@dataclass(frozen=True, slots=True)
class SearchHit:
    session_id: str
    segment_id: str
    start_ms: int
    end_ms: int
    speaker: str
    snippet: str
    rank: float
    language: str
    external_ref: str
    session_created_at: datetime


def search_hit(segment: TranscriptSegment, query: SearchQuery) -> SearchHit:
    """One result: where to jump (session, segment, times) and the words
    around the first match."""
    session = segment.session
    return SearchHit(
        session_id=str(segment.session_id),
        segment_id=segment.segment_id,
        start_ms=segment.start_ms,
        end_ms=segment.end_ms,
        speaker=segment.speaker,
        snippet=snippet(segment.text, query.terms),
        rank=round(float(getattr(segment, "rank", 0.0) or 0.0), 4),
        language=session.language,
        external_ref=session.external_ref,
        session_created_at=session.created_at,
    )


def snippet(text: str, terms: tuple[str, ...], *, width: int = SNIPPET_CHARS) -> str:
    """At most ``width`` characters of ``text`` around the earliest match,
    with an ellipsis where it was cut."""
    if len(text) <= width:
        return text
    folded = text.lower()  # lower(), not casefold(): it keeps positions (ß stays one character)
    positions = [p for p in (folded.find(t.lower()) for t in terms) if p >= 0]
    at = min(positions) if positions else 0
    start = max(0, min(at - width // 4, len(text) - width))
    end = start + width
    return ("…" if start > 0 else "") + text[start:end] + ("…" if end < len(text) else "")
