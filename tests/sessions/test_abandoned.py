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
from sessions import audio_store, storage_keys
from sessions.audio_store import part_write
from sessions.lifecycle import sessions_reap_abandoned, sessions_seal_stranded
from sessions.models import ConsultationSession, SessionStatus
from sessions.selectors import clinic_audio_usage
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


def test_it_ends_and_seals_a_session_abandoned_for_longer_than_the_clinics_grace(
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


def test_it_leaves_a_session_whose_producer_left_within_the_clinics_grace(tmp_media, clinic_a, clinic_b):
    clinic_a.producer_grace_minutes = 10
    clinic_a.save()
    session = _live(clinic_a, hours_ago=30)
    _stream_event(session, AuditAction.STREAM_STOP)  # the client was here just now
    other = _live(clinic_b, hours_ago=30)  # clinic B's grace (default 10 min) is its own
    _stream_event(other, AuditAction.STREAM_STOP)

    assert sessions_reap_abandoned(now=timezone.now() + timedelta(minutes=9)).ended == 0
    clinic_a.producer_grace_minutes = 5  # read per run
    clinic_a.save()
    assert sessions_reap_abandoned(now=timezone.now() + timedelta(minutes=9)).ended == 1
    session.refresh_from_db()
    other.refresh_from_db()
    assert (session.status, other.status) == (SessionStatus.ENDED, SessionStatus.LIVE)


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


def _ended_unsealed(clinic, *, minutes_ago: float) -> ConsultationSession:
    """What the idle-producer bug left: ended over REST, audio only in parts."""
    ended = timezone.now() - timedelta(minutes=minutes_ago)
    return ConsultationSession.objects.create(
        clinic=clinic,
        language="en-US",
        engine="fake",
        status=SessionStatus.ENDED,
        started_at=ended - timedelta(minutes=10),
        ended_at=ended,
    )


def test_it_seals_an_ended_session_whose_audio_was_left_in_parts_and_counts_its_usage(tmp_media, clinic_a, clinic_b):
    stranded = _ended_unsealed(clinic_a, minutes_ago=30)
    part_write(stranded, start=0, data=pcm(32_000, seed=4))
    part_write(stranded, start=32_000, data=pcm(16_000, seed=5))
    finishing = _ended_unsealed(clinic_b, minutes_ago=1)  # its producer may still be sealing it
    part_write(finishing, start=0, data=pcm(3_200, seed=6))
    used_before = clinic_audio_usage(clinic=clinic_a, max_age=0)

    report = sessions_seal_stranded()

    assert (report.sealed, report.failed) == (1, [])
    stranded.refresh_from_db()
    assert stranded.audio_bytes == 48_000 and stranded.audio_duration_ms == 1500 and stranded.audio_sha256
    with default_storage.open(storage_keys.audio_wav_key(stranded), "rb") as fh:
        assert fh.read()[44:] == pcm(32_000, seed=4) + pcm(16_000, seed=5)
    assert audio_store.parts_scan(stranded).part_count == 0
    usage = clinic_audio_usage(clinic=clinic_a, max_age=0)
    assert (usage.month_ms, usage.storage_bytes) > (used_before.month_ms, used_before.storage_bytes)
    assert usage.month_ms - used_before.month_ms == 1500
    write = AuditEvent.objects.get(action="audio.write", object_id=str(stranded.pk))
    assert write.actor_label == "system:reaper" and write.clinic_id == clinic_a.pk
    finishing.refresh_from_db()
    assert not finishing.audio_sha256
    assert sessions_seal_stranded().sealed == 0  # nothing left to do: the run is idempotent


def test_it_leaves_an_unsealed_session_whose_producer_still_holds_the_lease(tmp_media, clinic_a):
    session = _ended_unsealed(clinic_a, minutes_ago=30)
    ids = {"clinic_id": clinic_a.pk, "session_id": session.pk, "owner": "producer-1"}
    assert async_to_sync(_lease)("claim", takeover=False, **ids).ok
    try:
        assert sessions_seal_stranded().sealed == 0
    finally:
        async_to_sync(_lease)("release", durable_bytes=0, **ids)
    assert sessions_seal_stranded().sealed == 1


def test_the_nightly_command_seals_stranded_sessions(tmp_media, clinic_a, capsys):
    session = _ended_unsealed(clinic_a, minutes_ago=30)
    part_write(session, start=0, data=pcm(3_200, seed=7))

    call_command("purge_expired_sessions")

    assert "sealed 1 ended sessions left in parts" in capsys.readouterr().out
    session.refresh_from_db()
    assert session.audio_bytes == 3_200
