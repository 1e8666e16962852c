"""The producer socket refuses at connect (Error, then close 4429) when the
clinic's audio minutes for the month or its storage are used up; nothing is
started or audited as a stream start. Viewers are not refused."""

import pytest

from clinics.models import AuditEvent
from sessions.models import ConsultationSession, SessionStatus
from tests.transcription.helpers import adb, atoken_for, communicator, expect_close, make_session, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


def _use_up(clinic, *, minutes: bool) -> None:
    quota = clinic.quota
    ConsultationSession.objects.create(
        clinic=clinic,
        language="en-US",
        engine="fake",
        status=SessionStatus.ENDED,
        audio_duration_ms=120_000,  # 2 minutes
        audio_bytes=3_840_000,
    )
    if minutes:
        quota.audio_minutes_per_month = 2
    else:
        quota.storage_bytes = 3_840_000
    quota.save()


@pytest.mark.parametrize(("minutes", "code"), [(True, "audio_minutes_exhausted"), (False, "storage_quota_exceeded")])
async def test_it_refuses_a_producer_at_connect_when_the_quota_is_used_up(
    settings, tmp_path, principal_clinician_a, clinic_a, minutes, code
):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    session = await adb(make_session)(principal_clinician_a)
    await adb(_use_up)(clinic_a, minutes=minutes)

    producer = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
    connected, _ = await producer.connect()
    assert connected
    close_code, messages = await expect_close(producer)
    assert close_code == 4429
    assert messages[-1]["type"] == "Error" and messages[-1]["code"] == code
    await producer.disconnect()

    await adb(session.refresh_from_db)()
    assert session.status == SessionStatus.CREATED and session.started_at is None
    assert not await adb(AuditEvent.objects.filter(action="stream.start").exists)()

    # Reading the transcript of what exists stays possible.
    viewer = communicator(session.pk, "live", token=await atoken_for(principal_clinician_a, session))
    connected, _ = await viewer.connect()
    assert connected
    hello, _ = await receive_until(viewer, "Begin")
    assert hello["session_id"] == str(session.pk)
    await viewer.disconnect()
