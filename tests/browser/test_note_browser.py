"""The SOAP note on a consultation's page in a real Chromium, against a real
server process: review the line the engine was unsure of, correct it, mark
and play a note sentence's evidence, edit the draft, sign it (after a
confirmation) and find the signed note read-only; in Japanese on a phone,
the panel follows the job from queued to draft by itself. axe-core checks
the panel in every state it is shown in."""

from __future__ import annotations

import array
import math

import pytest
from playwright.sync_api import expect

from clinics.access import principal_for_user
from notes.jobs import note_jobs_run_due
from notes.models import ClinicalNote, NoteStatus
from notes.services import note_generate
from sessions.audio import wav_header
from sessions.models import ConsultationSession, TranscriptSegment
from sessions.storage_keys import audio_wav_key
from tests.browser.conftest import assert_accessible, screenshot, session_cookie_for
from tests.servers import requires_shared_database

pytestmark = [pytest.mark.browser, requires_shared_database()]

RATE = 16_000
EN_LINES = [
    ("s0", "I have had a headache for three days.", 0.95),
    ("s1", "Blood pressure is 182 over 84.", 0.41),  # the engine was unsure: 128 was said
    ("s2", "This is likely a tension headache.", 0.93),
    ("s3", "I will prescribe ibuprofen and we will follow up in two weeks.", 0.92),
]
JA_LINES = [
    ("j0", "三日前から頭が痛いです。", 0.95),
    ("j1", "血圧は128の84です。", 0.95),
    ("j2", "緊張型頭痛の疑いがあります。", 0.95),
    ("j3", "痛み止めを出します。", 0.95),
]


def _tone_wav(seconds: float) -> bytes:
    """A quiet 440 Hz tone: something to play, long enough to seek in."""
    samples = array.array("h", (int(3000 * math.sin(2 * math.pi * 440 * i / RATE)) for i in range(int(seconds * RATE))))
    pcm = samples.tobytes()
    return wav_header(len(pcm), RATE) + pcm


def _consultation(server, clinic, user, *, language: str, lines) -> ConsultationSession:
    """An ended consultation with its lines (2 s apart) and its sealed WAV
    where the server process reads its media."""
    from pathlib import Path

    wav = _tone_wav(2 * len(lines) + 1)
    session = ConsultationSession.objects.create(
        clinic=clinic,
        created_by=user,
        language=language,
        engine="fake",
        status="ended",
        audio_duration_ms=(2 * len(lines) + 1) * 1000,
        audio_bytes=len(wav) - 44,
    )
    key = audio_wav_key(session)
    path = Path(server.env["MEDIA_ROOT"]) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav)
    session.storage_key = key
    session.save(update_fields=["storage_key"])
    for i, (segment_id, text, confidence) in enumerate(lines):
        TranscriptSegment.objects.create(
            clinic=clinic,
            session=session,
            segment_id=segment_id,
            start_ms=i * 2000,
            end_ms=i * 2000 + 1800,
            text=text,
            confidence=confidence,
        )
    return session


def _ask_for_draft(session, user) -> None:
    note_generate(principal=principal_for_user(user, clinic_id=session.clinic_id), session=session)


def test_it_reviews_corrects_edits_and_signs_a_note(console_server, page_factory, clinic_a, clinician_a):
    server = console_server()
    session = _consultation(server, clinic_a, clinician_a, language="en-US", lines=EN_LINES)
    _ask_for_draft(session, clinician_a)
    assert note_jobs_run_due() == 1
    page = page_factory(cookies=[session_cookie_for(clinician_a, server)])
    page.goto(f"{server.url}/sessions/{session.pk}/")

    note = page.locator("#note")
    expect(note.locator("#note-status")).to_have_text("Draft")
    expect(page.locator("#facts-note")).to_contain_text("Version 1")
    expect(note.locator("#note-engine")).to_have_text(
        "Extractive draft: sentences are copied from the transcript, nothing is generated."
    )
    for label in ("Subjective", "Objective", "Assessment", "Plan"):
        expect(note.locator("legend", has_text=label)).to_be_visible()
    assert_accessible(page, "the consultation page with a draft note")
    screenshot(page, "note-draft")

    # Review: the unsure line is listed first; its link leads to the line.
    page.locator("#review").get_by_role("link", name="00:02").click()
    expect(page).to_have_url(f"{server.url}/sessions/{session.pk}/#seg-s1")
    line = page.locator("#seg-s1")
    # Correct it: what was said was 128, not 182.
    line.locator("summary", has_text="Correct this line").click()
    line.get_by_label("Corrected text").fill("Blood pressure is 128 over 84.")
    line.get_by_role("button", name="Save correction").click()
    expect(page.locator(".messages")).to_contain_text("The correction is saved")
    expect(page.locator("#seg-s1 .text")).to_have_text("Blood pressure is 128 over 84.")
    expect(page.locator("#seg-s1 .badge.corrected")).to_be_visible()
    segment = TranscriptSegment.objects.get(session=session, segment_id="s1")
    assert (segment.text, segment.revision) == ("Blood pressure is 128 over 84.", 1)

    # The Objective sentence's evidence: its line marked, its span played.
    objective = note.locator("#note-objective")
    objective.locator("a.evidence").first.click()
    expect(page.locator("#seg-s1")).to_have_class(lambda_class("evidence"))
    expect(page.locator("#transcript li.evidence")).to_have_count(1)
    expect(page.locator("#evidence-status")).to_have_text("The transcript line this sentence is drawn from is marked.")
    # It plays from the line's start and stops by itself at its end.
    page.wait_for_function(
        "() => { const a = document.getElementById('session-audio'); return a.currentTime >= 2 && !a.paused; }",
        timeout=15_000,
    )
    page.wait_for_function(
        "() => document.getElementById('session-audio').paused && window.__voiceaiSpanPlayer.stopAt === null",
        timeout=15_000,
    )
    stopped_at = page.evaluate("() => document.getElementById('session-audio').currentTime")
    assert 3.5 <= stopped_at < 5.0, stopped_at  # the span is 2.0-3.8 s; the next line starts at 4.0

    # Edit a sentence and save the draft.
    draft = ClinicalNote.objects.get(session=session)
    sid = next(s["id"] for s in draft.sections["objective"] if s["evidence"] == ["s1"])
    field = page.locator(f"#sentence-{sid}")
    field.focus()  # editing shows where the sentence came from
    expect(page.locator("#seg-s1")).to_have_class(lambda_class("evidence"))
    field.fill("BP 128/84 mmHg.")
    page.get_by_role("button", name="Save the draft").click()
    expect(page.locator(".messages")).to_contain_text("The draft is saved.")
    expect(page.locator(f"#sentence-{sid}")).to_have_value("BP 128/84 mmHg.")

    # Sign: refused once at the confirmation, then accepted.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Sign the note").click()
    assert ClinicalNote.objects.get(pk=draft.pk).status == NoteStatus.DRAFT
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Sign the note").click()
    expect(page.locator(".messages")).to_contain_text("The note is signed.")
    expect(note.locator("#note-status")).to_have_text("Signed")

    # Signed: read-only, the edit kept, a new version offered instead.
    expect(note.locator("textarea")).to_have_count(0)
    expect(note.get_by_role("button", name="Sign the note")).to_have_count(0)
    expect(note.locator("#note-readonly")).to_contain_text("BP 128/84 mmHg.")
    expect(note.get_by_role("button", name="Start a new version")).to_be_visible()
    expect(note.locator("#note-signed")).to_contain_text(clinician_a.username)
    # The evidence still plays from the signed note.
    note.locator("#note-objective a.evidence").first.click()
    expect(page.locator("#seg-s1")).to_have_class(lambda_class("evidence"))
    assert_accessible(page, "the consultation page with a signed note")
    screenshot(page, "note-signed")

    signed = ClinicalNote.objects.get(pk=draft.pk)
    assert signed.status == NoteStatus.SIGNED and signed.signed_by == f"user:{clinician_a.pk}"
    assert any(s["text"] == "BP 128/84 mmHg." and s["evidence"] == ["s1"] for s in signed.sections["objective"])

    # A new version: a draft again, the signed one listed among the versions.
    note.get_by_role("button", name="Start a new version").click()
    expect(note.locator("#note-version")).to_have_text("2")
    expect(note.locator(".note-versions li")).to_have_count(2)
    expect(note.locator("textarea").first).to_be_visible()
    assert [e for e in page.console_errors if "favicon" not in e] == []


def lambda_class(name: str):
    """A class list containing ``name`` (expect's to_have_class matches the whole attribute)."""
    import re

    return re.compile(rf"(^|\s){re.escape(name)}(\s|$)")


def test_it_follows_the_draft_being_written_in_japanese_on_a_phone(console_server, page_factory, clinic_a, clinician_a):
    server = console_server()
    session = _consultation(server, clinic_a, clinician_a, language="ja-JP", lines=JA_LINES)
    _ask_for_draft(session, clinician_a)
    page = page_factory(
        locale="ja-JP",
        cookies=[session_cookie_for(clinician_a, server)],
        viewport={"width": 390, "height": 844},
    )
    page.goto(f"{server.url}/sessions/{session.pk}/")
    note = page.locator("#note")
    expect(note.locator("#note-status")).to_have_text("待機中")
    expect(note.locator("#note-working-label")).to_have_text("下書きの作成を待っています…")
    assert_accessible(page, "the note panel while its draft is queued (ja)")
    screenshot(page, "note-queued-ja-phone")

    # The job runs (here, in the test's process); the page sees it by itself.
    assert note_jobs_run_due() == 1
    expect(note.locator("#note-status")).to_have_text("下書き", timeout=20_000)
    engine = note.locator("#note-engine")
    expect(engine.locator("strong")).to_contain_text("抽出による下書き")
    expect(engine).to_contain_text("文は文字起こしからそのまま写したもので、文章の生成はしていません。")
    for label in ("主訴・現病歴", "所見", "評価", "計画"):
        expect(note.locator("legend", has_text=label)).to_be_visible()
    # One column: nothing wider than the phone.
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    assert_accessible(page, "the note panel with a draft (ja, phone)")
    screenshot(page, "note-draft-ja-phone")

    page.once("dialog", lambda dialog: dialog.accept())
    note.get_by_role("button", name="記載に署名").click()
    expect(note.locator("#note-status")).to_have_text("署名済み")
    expect(note.locator("textarea")).to_have_count(0)
    assert_accessible(page, "the note panel with a signed note (ja, phone)")
    screenshot(page, "note-signed-ja-phone")
    assert ClinicalNote.objects.get(session=session).status == NoteStatus.SIGNED
