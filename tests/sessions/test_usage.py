"""The clinic's "sessions at the same time" usage is what the concurrent
stream quota counts (slots held in the live store), not rows whose status
says live: a stream that crashed keeps its row live, but its slot lapses."""

from sessions.models import ConsultationSession, SessionStatus
from sessions.selectors import quota_with_usage


def _live_row(clinic, ref: str) -> ConsultationSession:
    return ConsultationSession.objects.create(
        clinic=clinic, language="en-US", engine="fake", status=SessionStatus.LIVE, external_ref=ref
    )


def test_it_counts_held_stream_slots_not_live_rows(clinic_a, clinic_b, hold_stream_slot):
    rows = [_live_row(clinic_a, f"x{i}") for i in range(3)]
    assert quota_with_usage(clinic=clinic_a)["max_concurrent_sessions"]["used"] == 0
    hold_stream_slot(clinic_a, rows[0].pk)
    assert quota_with_usage(clinic=clinic_a)["max_concurrent_sessions"]["used"] == 1
    assert quota_with_usage(clinic=clinic_b)["max_concurrent_sessions"]["used"] == 0


def test_it_shows_no_figure_when_the_live_store_is_unreachable(clinic_a, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert quota_with_usage(clinic=clinic_a)["max_concurrent_sessions"]["used"] is None
