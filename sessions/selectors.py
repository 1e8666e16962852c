"""Reads of consultation sessions and transcripts, always through the
access layer with the acting principal."""

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, IntegerField, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from clinics.access import (
    Principal,
    segment_revisions_visible_to,
    segments_visible_to,
    sessions_visible_to,
    system_principal,
)
from clinics.models import Clinic
from clinics.selectors import clinic_quota
from sessions import audio_store
from sessions.audio import pcm_ms
from sessions.formats import speaker_roles
from sessions.live import streams_in_use
from sessions.models import ConsultationSession, SegmentRevision, TranscriptSegment
from voiceai.logging import get_logger

log = get_logger(__name__)


def session_list(
    *,
    principal: Principal,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    external_ref: str | None = None,
) -> QuerySet[ConsultationSession]:
    """Newest first (the model's ordering, backed by the (clinic, -created_at) index)."""
    qs = sessions_visible_to(principal)
    if status:
        qs = qs.filter(status=status)
    if created_after is not None:
        qs = qs.filter(created_at__gte=created_after)
    if created_before is not None:
        qs = qs.filter(created_at__lt=created_before)
    if external_ref:
        qs = qs.filter(external_ref=external_ref)
    return sessions_with_review_count(principal=principal, sessions=qs).order_by("-created_at", "id")


def review_filter(threshold: float) -> Q:
    """``sessions.formats.needs_review`` as a query on segments: finals the
    engine was unsure of that no clinician has confirmed or corrected. A
    null confidence never compares below the threshold, so it never counts."""
    return Q(is_final=True, confidence__lt=threshold, reviewed_at__isnull=True)


def sessions_with_review_count(
    *, principal: Principal, sessions: QuerySet[ConsultationSession]
) -> QuerySet[ConsultationSession]:
    """Each session with ``needs_review_count``: a subquery per row shown
    (a page of the list), not a join and group over all the clinic's
    segments."""
    flagged = (
        TranscriptSegment.objects.filter(
            review_filter(principal.clinic.low_confidence_threshold),
            clinic=principal.clinic,
            session=OuterRef("pk"),
        )
        .order_by()
        .values("session")
        .annotate(n=Count("id"))
        .values("n")
    )
    return sessions.annotate(needs_review_count=Coalesce(Subquery(flagged, output_field=IntegerField()), 0))


def session_review_count(*, principal: Principal, session: ConsultationSession) -> int:
    """How many of the session's finals need review at the clinic's threshold."""
    threshold = principal.clinic.low_confidence_threshold
    return segments_visible_to(principal, session).filter(review_filter(threshold)).count()


def session_speaker_roles(*, principal: Principal, session: ConsultationSession) -> dict[str, str]:
    """The roles in effect for the session's labels (set, or the first guess)."""
    speakers, _ = speakers_heard(principal=principal, session=session)
    return speaker_roles((s.label for s in speakers), session.speaker_roles)


@dataclass(frozen=True)
class SpeakerHeard:
    label: str
    role: str | None
    segments: int
    first_ms: int


def speakers_heard(*, principal: Principal, session: ConsultationSession) -> tuple[list[SpeakerHeard], bool]:
    """The speaker labels in the session's finals, first heard first, each
    with its role (set or guessed) and how many finals it spoke; and
    whether the roles were set by a person (False: the first guess). One
    query; no transcript text is read."""
    rows = (
        segments_visible_to(principal, session)
        .filter(is_final=True)
        .exclude(speaker="")
        .values("speaker")
        .annotate(n=Count("id"), first_ms=Min("start_ms"))
        .order_by("first_ms", "speaker")
    )
    heard = [(row["speaker"], row["n"], row["first_ms"]) for row in rows]
    stored = session.speaker_roles or {}
    roles = speaker_roles((label for label, _, _ in heard), stored)
    speakers = [SpeakerHeard(label=label, role=roles.get(label), segments=n, first_ms=ms) for label, n, ms in heard]
    return speakers, bool(stored)


def transcript_finals(*, principal: Principal, session: ConsultationSession) -> QuerySet[TranscriptSegment]:
    """The final segments in time order (interim results are never served),
    each at its latest revision: a clinician's correction is written onto
    the segment row (``sessions.services.segment_correct``), its history
    beside it (``transcript_history``)."""
    return segments_visible_to(principal, session).filter(is_final=True).order_by("start_ms", "id")


def transcript_history(*, principal: Principal, session: ConsultationSession) -> dict[int, list[SegmentRevision]]:
    """The corrections of the session's segments, oldest first, by segment
    row id (one query; segments never corrected are absent)."""
    history: dict[int, list[SegmentRevision]] = {}
    for revision in segment_revisions_visible_to(principal, session).order_by("segment_id", "revision"):
        history.setdefault(revision.segment_id, []).append(revision)
    return history


def _month_start(now: datetime) -> datetime:
    local = timezone.localtime(now)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class AudioUsage:
    month_ms: int
    storage_bytes: int
    at: float


# Per process: a reconnect storm brings hundreds of one clinic's producers
# within seconds, and each connect checks the clinic's audio quotas. The sums
# move only when a session is sealed, so a few seconds' staleness lets at
# most a few more streams start past a limit — as "usage counts sealed audio
# only" already does for the streams running when the limit is reached.
AUDIO_USAGE_MAX_AGE_SECONDS = 5.0
_audio_usage: dict[object, AudioUsage] = {}


def clinic_audio_usage(*, clinic: Clinic, max_age: float = AUDIO_USAGE_MAX_AGE_SECONDS) -> AudioUsage:
    """The clinic's audio this calendar month (ms) and stored audio (bytes),
    in one query, remembered for ``max_age`` seconds (0: read now)."""
    now = time.monotonic()
    usage = _audio_usage.get(clinic.pk)
    if usage is not None and now - usage.at < max_age:
        return usage
    month_start = _month_start(timezone.now())
    sums = sessions_visible_to(system_principal(clinic, label="usage")).aggregate(
        month_ms=Sum("audio_duration_ms", filter=Q(created_at__gte=month_start)), storage=Sum("audio_bytes")
    )
    usage = AudioUsage(month_ms=sums["month_ms"] or 0, storage_bytes=sums["storage"] or 0, at=now)
    if len(_audio_usage) > 10_000:  # bounded: a process serves a few hundred clinics at most
        _audio_usage.clear()
    _audio_usage[clinic.pk] = usage
    return usage


def _streams_in_use(clinic: Clinic) -> int | None:
    try:
        return streams_in_use(clinic_id=clinic.pk)
    except Exception as exc:  # a usage page must not fail with Redis; the figure is then unknown
        log.warning("usage_streams_unavailable", clinic_id=str(clinic.pk), error=type(exc).__name__)
        return None


def clinic_usage(*, clinic: Clinic) -> dict[str, Any]:
    """Usage next to each quota limit: the concurrent-stream slots held now
    (what max_concurrent_sessions enforces; None when Redis can't say), audio minutes in
    the current calendar month (TIME_ZONE), and bytes of stored audio.

    Storage is the sum of the sessions' recorded ``audio_bytes`` — listing
    the bucket on every read would be slow and costly.
    """
    sessions = sessions_visible_to(system_principal(clinic, label="usage"))
    month_start = _month_start(timezone.now())
    month_ms = sessions.filter(created_at__gte=month_start).aggregate(ms=Sum("audio_duration_ms"))["ms"] or 0
    return {
        "live_sessions": _streams_in_use(clinic),
        "audio_minutes_this_month": round(month_ms / 60000, 2),
        "storage_bytes": sessions.aggregate(b=Sum("audio_bytes"))["b"] or 0,
        "month_start": month_start,
    }


def quota_with_usage(*, clinic: Clinic) -> dict[str, dict[str, Any]]:
    """Each limit with its current use next to it."""
    quota = clinic_quota(clinic=clinic)
    usage = clinic_usage(clinic=clinic)
    return {
        "max_concurrent_sessions": {"limit": quota.max_concurrent_sessions, "used": usage["live_sessions"]},
        "max_session_seconds": {"limit": quota.max_session_seconds, "used": None},
        "audio_minutes_per_month": {
            "limit": quota.audio_minutes_per_month,
            "used": usage["audio_minutes_this_month"],
            "period_start": usage["month_start"],
        },
        "storage_bytes": {"limit": quota.storage_bytes, "used": usage["storage_bytes"]},
    }


def audio_stored_ms(*, session: ConsultationSession) -> int:
    """How much of the session's audio is stored: its sealed length, or for a
    live session the acknowledged parts so far (one storage listing)."""
    if session.storage_key or session.audio_bytes:
        return session.audio_duration_ms or 0
    return pcm_ms(audio_store.parts_scan(session).durable_bytes, session.sample_rate)
