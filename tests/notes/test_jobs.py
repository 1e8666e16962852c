"""The note job: queued when a session's transcript completes (after
commit), idempotent, claimed by one worker, resumed after a process stops
mid-generation (expired lease), fenced against a worker that lost its
claim, and never leaving a silent gap."""

from datetime import timedelta

from django.utils import timezone

from notes.engines.base import NoteDraft
from notes.jobs import note_job_claim, note_job_run, note_jobs_run_due
from notes.models import ClinicalNote, NoteEngineCall, NoteStatus
from notes.services import note_draft_save, note_generate
from sessions.models import SessionStatus
from sessions.services import session_end


def test_it_queues_a_draft_when_a_session_ends(
    client_a, session_a, segments_a, django_capture_on_commit_callbacks, run_jobs
):
    with django_capture_on_commit_callbacks(execute=True):
        assert client_a.post(f"/api/v1/sessions/{session_a.pk}/end/").status_code == 200
    note = ClinicalNote.objects.get(session=session_a)
    assert (note.status, note.version, note.requested_by) == (NoteStatus.QUEUED, 1, "system:notes")
    assert note.run_after > timezone.now()  # a little later: the producer's last finals land first
    run_jobs(now=timezone.now() + timedelta(minutes=1))
    note.refresh_from_db()
    assert note.status == NoteStatus.DRAFT
    assert [s["evidence"] for s in note.sections["subjective"]] == [["s2"]]


def test_it_queues_one_draft_however_often_the_transcript_completes(
    session_a, segments_a, principal_clinician_a, django_capture_on_commit_callbacks, run_jobs
):
    with django_capture_on_commit_callbacks(execute=True):
        session_end(principal=principal_clinician_a, session=session_a)
    from notes.jobs import note_request_on_transcript_completed

    for _ in range(3):  # seal, a batch finish, a second end: the same signal again
        note_request_on_transcript_completed(None, clinic_id=session_a.clinic_id, session_id=session_a.pk)
    assert ClinicalNote.objects.filter(session=session_a).count() == 1
    later = timezone.now() + timedelta(minutes=1)
    assert run_jobs(now=later) == 1
    assert run_jobs(now=later) == 0
    note_request_on_transcript_completed(None, clinic_id=session_a.clinic_id, session_id=session_a.pk)
    assert ClinicalNote.objects.get(session=session_a).status == NoteStatus.DRAFT  # unchanged transcript: kept
    assert NoteEngineCall.objects.filter(clinic=session_a.clinic).count() == 1


def test_it_drafts_again_when_late_finals_changed_an_untouched_draft(
    session_a, segments_a, principal_clinician_a, run_jobs
):
    from notes.jobs import note_request_on_transcript_completed
    from sessions.models import TranscriptSegment

    session_a.status = SessionStatus.ENDED
    session_a.save(update_fields=["status"])
    note_request_on_transcript_completed(None, clinic_id=session_a.clinic_id, session_id=session_a.pk)
    later = timezone.now() + timedelta(minutes=1)
    run_jobs(now=later)
    TranscriptSegment.objects.create(
        clinic=session_a.clinic, session=session_a, segment_id="s4", start_ms=4000, end_ms=5000,
        text="The pain started on Monday.", speaker="patient",
    )  # fmt: skip
    note_request_on_transcript_completed(None, clinic_id=session_a.clinic_id, session_id=session_a.pk)
    run_jobs(now=later + timedelta(minutes=1))
    note = ClinicalNote.objects.get(session=session_a)
    assert note.status == NoteStatus.DRAFT and note.revision == 1
    assert ["s4"] in [s["evidence"] for s in note.sections["subjective"]]


def test_it_does_not_draft_an_open_session(client_a, session_a, segments_a):
    response = client_a.post(f"/api/v1/sessions/{session_a.pk}/note/generate/", {}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "session_not_ended"
    assert not ClinicalNote.objects.exists()


def test_it_returns_the_running_job_when_asked_again(client_a, en_session):
    first = client_a.post(f"/api/v1/sessions/{en_session.pk}/note/generate/", {}, format="json").json()
    again = client_a.post(f"/api/v1/sessions/{en_session.pk}/note/generate/", {}, format="json").json()
    assert first["id"] == again["id"] and again["status"] == "queued"
    assert ClinicalNote.objects.filter(session=en_session).count() == 1


def test_it_lets_only_one_worker_claim_a_job(en_session, principal_clinician_a):
    note_generate(principal=principal_clinician_a, session=en_session)
    claimed = note_job_claim()
    assert claimed is not None and claimed.status == NoteStatus.GENERATING and claimed.attempts == 1
    assert note_job_claim() is None


def test_it_resumes_a_job_whose_process_stopped(en_session, principal_clinician_a, settings):
    note_generate(principal=principal_clinician_a, session=en_session)
    lost = note_job_claim()  # ...and the process running it dies here
    assert lost is not None
    assert note_jobs_run_due() == 0  # its lease still runs: nobody takes it over yet
    after_lease = timezone.now() + timedelta(seconds=settings.NOTES_JOB_LEASE_SECONDS + 1)
    assert note_jobs_run_due(now=after_lease) == 1
    note = ClinicalNote.objects.get(pk=lost.pk)
    assert (note.status, note.attempts) == (NoteStatus.DRAFT, 2)
    assert note.sections["plan"]


def test_it_fails_a_job_that_keeps_losing_its_process(en_session, principal_clinician_a, settings, client_a):
    settings.NOTES_MAX_ATTEMPTS = 1
    note_generate(principal=principal_clinician_a, session=en_session)
    assert note_job_claim() is not None
    note_jobs_run_due(now=timezone.now() + timedelta(seconds=settings.NOTES_JOB_LEASE_SECONDS + 1))
    body = client_a.get(f"/api/v1/sessions/{en_session.pk}/note/").json()
    assert body["status"] == "failed" and body["error"]["code"] == "note_job_lost" and body["error"]["retryable"]


def test_it_stores_nothing_from_a_worker_that_lost_its_claim(en_session, principal_clinician_a, settings):
    note_generate(principal=principal_clinician_a, session=en_session)
    slow = note_job_claim()
    note_jobs_run_due(now=timezone.now() + timedelta(seconds=settings.NOTES_JOB_LEASE_SECONDS + 1))
    winner = ClinicalNote.objects.get(pk=slow.pk)
    stale_draft = NoteDraft(sections={"plan": []}, prompt_version="stale")
    assert note_draft_save(note=slow, draft=stale_draft, fingerprint="x") is False
    assert ClinicalNote.objects.get(pk=slow.pk).sections == winner.sections


def test_it_records_an_unexpected_error_as_a_retryable_failure(en_session, principal_clinician_a, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr("notes.engines.extractive.ExtractiveNoteEngine.generate", broken)
    note_generate(principal=principal_clinician_a, session=en_session)
    note = note_job_claim()
    assert note_job_run(note) == NoteStatus.QUEUED
    note.refresh_from_db()
    assert (note.error_code, note.error_retryable) == ("internal_error", True)


def test_it_forgets_a_job_whose_session_was_erased(en_session, principal_clinician_a, principal_admin_a):
    from sessions.services import session_erase

    note_generate(principal=principal_clinician_a, session=en_session)
    claimed = note_job_claim()
    session_erase(principal=principal_admin_a, session=en_session)
    assert not ClinicalNote.objects.exists()
    assert note_job_run(claimed) == ""


def test_it_seeds_the_demo_consultations_with_note_drafts(db, tmp_path):
    import io

    from django.core.management import call_command

    for _ in range(2):  # idempotent: the second run adds no version
        call_command("seed_demo", "--force", "--key-file", str(tmp_path / "k"), stdout=io.StringIO())
    notes = ClinicalNote.objects.filter(clinic__slug="demo").select_related("session")
    assert sorted((n.session.external_ref, n.version, n.status) for n in notes) == [
        ("demo-en-chest-pain", 1, "draft"),
        ("demo-ja-cough", 1, "draft"),
        ("demo-ja-headache", 1, "draft"),
    ]
    headache = next(n for n in notes if n.session.external_ref == "demo-ja-headache")
    assert headache.sections["plan"][0]["text"] == "鎮痛薬を出しますので、一週間後にもう一度来てください。"
