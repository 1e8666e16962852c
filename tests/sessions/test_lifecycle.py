import json
import zipfile
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone

from clinics.models import AuditEvent
from sessions import storage_keys
from sessions.lifecycle import clinic_export, sessions_purge_expired
from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment


def _session(clinic, *, days_old: int, status=SessionStatus.ENDED, audio: bytes | None = None):
    session = ConsultationSession.objects.create(clinic=clinic, language="en-US", engine="fake", status=status)
    ConsultationSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(days=days_old))
    TranscriptSegment.objects.create(
        clinic=clinic, session=session, segment_id="s1", start_ms=0, end_ms=900, text="blood pressure is fine"
    )
    if audio is not None:
        default_storage.save(storage_keys.audio_wav_key(session), ContentFile(audio))
    return session


@pytest.fixture
def short_retention(clinic_a):
    clinic_a.retention_days = 30
    clinic_a.save()
    return clinic_a


def test_it_erases_sessions_past_the_clinics_retention_with_tombstones(tmp_media, short_retention, clinic_b):
    old = _session(short_retention, days_old=31, audio=b"RIFF-old")
    recent = _session(short_retention, days_old=29)
    other_clinic_old = _session(clinic_b, days_old=31)  # clinic B keeps 5 years

    report = sessions_purge_expired()

    assert report.erased == 1 and report.failed == []
    assert not ConsultationSession.objects.filter(pk=old.pk).exists()
    assert not TranscriptSegment.objects.filter(session_id=old.pk).exists()
    assert not default_storage.exists(storage_keys.audio_wav_key(old))
    assert ConsultationSession.objects.filter(pk__in=[recent.pk, other_clinic_old.pk]).count() == 2
    tombstone = AuditEvent.objects.get(action="session.erase", object_id=str(old.pk))
    assert tombstone.actor_label == "system:retention"


def test_it_never_purges_a_live_session(tmp_media, short_retention):
    live = _session(short_retention, days_old=400, status=SessionStatus.LIVE)
    assert sessions_purge_expired().erased == 0
    assert ConsultationSession.objects.filter(pk=live.pk).exists()


def test_it_changes_nothing_on_a_dry_run(tmp_media, short_retention):
    old = _session(short_retention, days_old=31)
    assert sessions_purge_expired(dry_run=True).erased == 1
    assert ConsultationSession.objects.filter(pk=old.pk).exists()


def test_it_is_safe_to_run_the_purge_command_twice(tmp_media, short_retention, capsys):
    _session(short_retention, days_old=31)
    call_command("purge_expired_sessions")
    call_command("purge_expired_sessions")
    assert "erased 0 sessions" in capsys.readouterr().out


def test_it_exports_only_the_clinics_own_sessions(tmp_media, clinic_a, clinic_b, tmp_path):
    mine = _session(clinic_a, days_old=1, audio=b"RIFF-audio-bytes")
    theirs = _session(clinic_b, days_old=1)
    out = tmp_path / "export.zip"

    assert clinic_export(clinic=clinic_a, out_path=out) == 1

    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        assert archive.read(f"{mine.pk}/audio.wav") == b"RIFF-audio-bytes"
        assert "blood pressure is fine" in archive.read(f"{mine.pk}/transcript.txt").decode()
    assert [s["id"] for s in manifest["sessions"]] == [str(mine.pk)]
    assert not any(str(theirs.pk) in name for name in names)
    actions = set(AuditEvent.objects.filter(clinic=clinic_a).values_list("action", flat=True))
    assert {"clinic.export", "transcript.read", "audio.read"} <= actions


def test_it_refuses_to_overwrite_an_existing_export(tmp_media, clinic_a, tmp_path):
    out = tmp_path / "exists.zip"
    out.write_bytes(b"")
    with pytest.raises(Exception, match="refusing"):
        call_command("export_clinic", "--clinic", clinic_a.slug, "--out", str(out))


def test_it_exports_the_speaker_roles_with_the_labels(tmp_media, clinic_a, tmp_path):
    session = _session(clinic_a, days_old=1)
    TranscriptSegment.objects.filter(session=session).update(speaker="spk_3")
    session.speaker_roles = {"spk_3": "patient"}
    session.save(update_fields=["speaker_roles"])
    out = tmp_path / "export.zip"
    clinic_export(clinic=clinic_a, out_path=out)
    with zipfile.ZipFile(out) as archive:
        assert archive.read(f"{session.pk}/transcript.txt").decode() == "Patient (spk_3): blood pressure is fine\n"
        document = json.loads(archive.read(f"{session.pk}/transcript.json"))
    assert document["speaker_roles"] == {"spk_3": "patient"} and document["segments"][0]["speaker_role"] == "patient"
