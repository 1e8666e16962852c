"""Live sessions whose client never came back are ended and sealed (then
retention can reach them); streaming or recently active ones are not."""

from datetime import timedelta

from asgiref.sync import async_to_sync
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone

from clinics.access import system_principal
from clinics.audit import AuditAction, audit_record
from clinics.models import AuditEvent
from sessions import storage_keys
from sessions.audio_store import part_write
from sessions.lifecycle import sessions_reap_abandoned
from sessions.models import ConsultationSession, SessionStatus
from tests.transcription.helpers import pcm
from transcription import live_state


def _live(clinic, *, hours_ago: float = 0, source: str = "stream") -> ConsultationSession:
    started = timezone.now() - timedelta(hours=hours_ago)
    session = ConsultationSession.objects.create(
        clinic=clinic, language="en-US", engine="fake", status=SessionStatus.LIVE, started_at=started, source=source
    )
    ConsultationSession.objects.filter(pk=session.pk).update(created_at=started)
    session.refresh_from_db()
    return session


def _stream_event(session, action: str) -> None:
    audit_record(
        clinic=session.clinic,
        action=action,
        object_type="session",
        object_id=session.pk,
        actor=system_principal(session.clinic, label="test"),
    )


def test_it_ends_and_seals_a_session_abandoned_for_the_idle_hours(
    tmp_media, clinic_a, clinic_b, django_capture_on_commit_callbacks
):
    abandoned = _live(clinic_a)
    _stream_event(abandoned, AuditAction.STREAM_START)
    part_write(abandoned, start=0, data=pcm(32_000, seed=3))
    batch = _live(clinic_b, source="batch")  # live while its job runs; no stream

    with django_capture_on_commit_callbacks(execute=True):
        report = sessions_reap_abandoned(now=timezone.now() + timedelta(hours=13))

    assert (report.ended, report.failed) == (1, [])
    abandoned.refresh_from_db()
    assert abandoned.status == SessionStatus.ENDED and abandoned.ended_at is not None
    assert abandoned.audio_sha256 and abandoned.audio_duration_ms == 1000
    assert default_storage.exists(storage_keys.audio_wav_key(abandoned))
    end = AuditEvent.objects.get(action="session.end", object_id=str(abandoned.pk))
    assert end.actor_label == "system:abandoned" and end.clinic_id == clinic_a.pk
    batch.refresh_from_db()
    assert batch.status == SessionStatus.LIVE


def test_it_leaves_a_session_with_recent_stream_activity(tmp_media, clinic_a, settings):
    settings.ABANDONED_SESSION_HOURS = 12
    session = _live(clinic_a, hours_ago=30)
    _stream_event(session, AuditAction.STREAM_STOP)  # the client was here just now

    assert sessions_reap_abandoned(now=timezone.now() + timedelta(hours=11)).ended == 0
    settings.ABANDONED_SESSION_HOURS = 10  # read per run
    assert sessions_reap_abandoned(now=timezone.now() + timedelta(hours=11)).ended == 1


async def _lease(action: str, **kwargs) -> object:
    """Take or give back a producer lease in the process's live store (Redis
    with REDIS_URL), as a producer connection does."""
    store = live_state.get_live_store()
    try:
        return await getattr(store, action)(**kwargs)
    finally:
        if isinstance(store, live_state.RedisLiveStore):
            await store.aclose()  # its connections belong to this call's loop


def test_it_leaves_a_session_whose_producer_holds_the_lease(tmp_media, clinic_a):
    session = _live(clinic_a, hours_ago=30)
    ids = {"clinic_id": clinic_a.pk, "session_id": session.pk, "owner": "producer-1"}
    assert async_to_sync(_lease)("claim", takeover=False, **ids).ok
    try:
        report = sessions_reap_abandoned()
    finally:
        async_to_sync(_lease)("release", durable_bytes=0, **ids)
    assert (report.ended, report.failed) == (0, [])
    session.refresh_from_db()
    assert session.status == SessionStatus.LIVE
    assert sessions_reap_abandoned().ended == 1  # once the lease is gone


def test_it_leaves_a_session_live_when_its_lease_cannot_be_checked(tmp_media, clinic_a, monkeypatch):
    session = _live(clinic_a, hours_ago=30)

    def redis_down(**kwargs):
        raise ConnectionError("redis unreachable")

    monkeypatch.setattr(live_state, "producer_attached", redis_down)
    report = sessions_reap_abandoned()
    assert (report.ended, report.failed) == (0, [str(session.pk)])
    session.refresh_from_db()
    assert session.status == SessionStatus.LIVE


def test_it_ends_abandoned_sessions_before_the_purge_in_one_command(tmp_media, clinic_a, capsys):
    clinic_a.retention_days = 30
    clinic_a.save()
    session = _live(clinic_a, hours_ago=24 * 40)

    call_command("purge_expired_sessions")

    out = capsys.readouterr().out
    assert "ended 1 abandoned live sessions" in out and "erased 1 sessions" in out
    assert not ConsultationSession.objects.filter(pk=session.pk).exists()
    assert AuditEvent.objects.filter(action="session.end", object_id=str(session.pk)).exists()
    assert AuditEvent.objects.filter(action="session.erase", object_id=str(session.pk)).exists()
