from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clinics.access import Principal
from clinics.models import AuditEvent, ClinicQuota
from sessions import storage_keys
from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment
from sessions.selectors import clinic_usage, session_list, transcript_finals
from sessions.services import (
    SessionEnded,
    segment_confirm,
    session_create,
    session_end,
    session_erase,
    speaker_roles_set,
    stream_start,
    transcript_read,
)
from voiceai.errors import ClinicSuspended, Forbidden, InvalidInput, NotFound, QuotaExceeded


def test_it_takes_engine_and_language_from_the_clinic(principal_clinician_a, clinic_a, settings):
    settings.TRANSCRIPTION_ENGINE = "local"
    session = session_create(principal=principal_clinician_a)
    assert (session.engine, session.language, session.sample_rate) == ("local", "en-US", 16000)
    clinic_a.transcription_engine = "aws"
    clinic_a.save()
    assert session_create(principal=principal_clinician_a, language="ja-JP").engine == "aws"
    assert session.created_by == principal_clinician_a.user


@pytest.mark.parametrize(
    "kwargs", [{"language": "xx-XX"}, {"sample_rate": 4000}, {"sample_rate": True}, {"external_ref": "r" * 200}]
)
def test_it_refuses_invalid_session_parameters(principal_clinician_a, kwargs):
    with pytest.raises(InvalidInput):
        session_create(principal=principal_clinician_a, **kwargs)
    assert ConsultationSession.objects.count() == 0


def test_it_refuses_sessions_for_a_suspended_clinic(principal_clinician_a, clinic_a):
    clinic_a.is_active = False
    clinic_a.save()
    with pytest.raises(ClinicSuspended):
        session_create(principal=principal_clinician_a)


def test_it_ends_and_erases_only_the_principals_sessions(
    principal_b, principal_clinician_a, principal_admin_a, tmp_media
):
    session = session_create(principal=principal_clinician_a)
    default_storage.save(storage_keys.audio_wav_key(session), ContentFile(b"RIFF"))
    with pytest.raises(NotFound):
        session_end(principal=principal_b, session=session)
    with pytest.raises(NotFound):
        session_erase(principal=principal_b, session=session)
    with pytest.raises(NotFound):
        transcript_read(principal=principal_b, session=session, fmt="json")
    session.refresh_from_db()
    assert session.status == SessionStatus.CREATED
    assert default_storage.exists(storage_keys.audio_wav_key(session))
    with pytest.raises(Forbidden):
        session_erase(principal=principal_clinician_a, session=session)
    assert default_storage.exists(storage_keys.audio_wav_key(session))
    assert session_erase(principal=principal_admin_a, session=session) == {"storage_objects": 1, "segments": 0}
    assert not default_storage.exists(storage_keys.audio_wav_key(session))
    assert AuditEvent.objects.filter(action="session.erase", object_id=str(session.id)).exists()


def test_it_counts_usage_for_the_calendar_month(principal_clinician_a, clinic_a, clinic_b, hold_stream_slot):
    this_month = session_create(principal=principal_clinician_a)
    last_month = session_create(principal=principal_clinician_a)
    ConsultationSession.objects.filter(pk=this_month.pk).update(
        audio_duration_ms=120_000, audio_bytes=1000, status=SessionStatus.LIVE
    )
    month_start = clinic_usage(clinic=clinic_a)["month_start"]
    ConsultationSession.objects.filter(pk=last_month.pk).update(
        audio_duration_ms=600_000, audio_bytes=500, created_at=month_start - timedelta(seconds=1)
    )
    ConsultationSession.objects.create(clinic=clinic_b, language="ja-JP", engine="fake", audio_duration_ms=9_999_999)
    hold_stream_slot(clinic_a, this_month.pk)  # its producer holds a stream slot
    usage = clinic_usage(clinic=clinic_a)
    assert usage["live_sessions"] == 1
    assert usage["audio_minutes_this_month"] == 2
    assert usage["storage_bytes"] == 1500
    assert month_start <= timezone.now() and month_start.day == 1


def test_it_lists_and_reads_finals_through_the_access_layer(principal_b, principal_clinician_a):
    session = session_create(principal=principal_clinician_a, external_ref="ref-1")
    assert list(session_list(principal=principal_b)) == []
    assert list(session_list(principal=principal_clinician_a, external_ref="ref-1")) == [session]
    with pytest.raises(NotFound):
        transcript_finals(principal=principal_b, session=session)


def _stream_start_audits(clinic) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(clinic=clinic, action="stream.start"))


@pytest.mark.django_db
def test_it_takes_a_new_session_live_with_its_audit_row_in_one_statement(principal_clinician_a, clinic_a):
    session = session_create(principal=principal_clinician_a)
    with CaptureQueriesContext(connection) as queries:
        started = stream_start(
            principal=principal_clinician_a, session_id=session.pk, resume_from_byte=0, takeover=False
        )
    # BEGIN is not a query here; the usage read is remembered from session_create.
    if connection.vendor == "postgresql":  # (SQLite, ``make run``: the ORM's queries)
        assert [q["sql"].split()[0] for q in queries] == ["WITH"]
    session.refresh_from_db()
    assert (session.status, session.started_at is not None, started.segments) == (SessionStatus.LIVE, True, 0)
    [audit] = _stream_start_audits(clinic_a)
    assert (audit.object_id, audit.actor_user, audit.details) == (
        str(session.pk),
        principal_clinician_a.user,
        {"resume_from_byte": 0, "takeover": False, "finals_resent": 0},
    )


@pytest.mark.django_db
def test_it_starts_a_stream_of_a_live_session_without_moving_its_start(principal_clinician_a, clinic_a):
    session = session_create(principal=principal_clinician_a)
    stream_start(principal=principal_clinician_a, session_id=session.pk, resume_from_byte=0, takeover=False)
    session.refresh_from_db()
    first_start = session.started_at
    stream_start(principal=principal_clinician_a, session_id=session.pk, resume_from_byte=3200, takeover=True)
    session.refresh_from_db()
    assert (session.status, session.started_at) == (SessionStatus.LIVE, first_start)
    assert [a.details for a in _stream_start_audits(clinic_a)] == [
        {"resume_from_byte": 3200, "takeover": True, "finals_resent": 0},
        {"resume_from_byte": 0, "takeover": False, "finals_resent": 0},
    ]


@pytest.mark.django_db
def test_it_refuses_to_start_an_ended_or_foreign_session_and_audits_nothing(
    principal_clinician_a, principal_b, clinic_a, clinic_b
):
    session = session_create(principal=principal_clinician_a)
    # (Each refusal in a savepoint of its own: it rolls back the test's transaction otherwise.)
    with pytest.raises(NotFound), transaction.atomic():
        stream_start(principal=principal_b, session_id=session.pk, resume_from_byte=0, takeover=False)
    ConsultationSession.objects.filter(pk=session.pk).update(status=SessionStatus.ENDED)
    with pytest.raises(SessionEnded), transaction.atomic():
        stream_start(principal=principal_clinician_a, session_id=session.pk, resume_from_byte=0, takeover=False)
    assert _stream_start_audits(clinic_a) == _stream_start_audits(clinic_b) == []


@pytest.mark.django_db
def test_it_leaves_a_session_created_and_unaudited_when_the_quota_refuses(principal_clinician_a, clinic_a):
    session = session_create(principal=principal_clinician_a)
    ClinicQuota.objects.update_or_create(clinic=clinic_a, defaults={"storage_bytes": 0})
    clinic_a.refresh_from_db()
    principal = Principal(clinic=clinic_a, role=principal_clinician_a.role, user=principal_clinician_a.user)
    with pytest.raises(QuotaExceeded), transaction.atomic():
        stream_start(principal=principal, session_id=session.pk, resume_from_byte=0, takeover=False)
    session.refresh_from_db()
    assert (session.status, session.started_at) == (SessionStatus.CREATED, None)
    assert _stream_start_audits(clinic_a) == []


@pytest.mark.django_db
def test_it_keeps_another_clinics_segments_out_of_review_and_roles(principal_b, clinic_a):
    session = ConsultationSession.objects.create(clinic=clinic_a, language="en-US", engine="fake")
    TranscriptSegment.objects.create(
        clinic=clinic_a, session=session, segment_id="s1", start_ms=0, end_ms=9, text="x", confidence=0.1
    )
    with pytest.raises(NotFound):
        segment_confirm(principal=principal_b, session=session, segment_id="s1", revision=0)
    with pytest.raises(NotFound):
        speaker_roles_set(principal=principal_b, session=session, roles={"spk_0": "patient"})
    session.refresh_from_db()
    assert session.speaker_roles == {}
    assert TranscriptSegment.objects.get(session=session).reviewed_at is None
