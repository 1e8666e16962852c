"""The console as a real clinic meets it (issue 15), in Chromium against
real server processes: a Japanese clinic on the offline engine, an engine
that refuses mid-way, leaving the Record page mid-recording, phone and
tablet widths."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from sessions.models import ConsultationSession
from tests.browser.conftest import assert_accessible, screenshot, session_cookie_for
from tests.servers import requires_shared_database

pytestmark = [pytest.mark.browser, requires_shared_database()]


def test_it_explains_before_recording_that_the_offline_engine_cannot_do_japanese(
    console_server, page_factory, clinic_a, clinician_a
):
    clinic_a.default_language = "ja-JP"
    clinic_a.transcription_engine = "local"
    clinic_a.save()
    server = console_server()
    page = page_factory(locale="ja-JP", cookies=[session_cookie_for(clinician_a, server)])
    page.goto(server.url + "/")
    japanese = page.locator('#language option[value="ja-JP"]')
    expect(japanese).to_be_disabled()
    expect(page.locator("#language")).to_have_value("en-US")
    hint = page.locator("#language-hint")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("英語のみ")
    expect(hint).to_contain_text("AWS")
    # The hint is the select's description for screen readers too.
    assert page.get_attribute("#language", "aria-describedby") == "language-hint"
    assert_accessible(page, "the record page of a Japanese clinic on the offline engine")
    screenshot(page, "record-ja-offline-engine")
    assert page.console_errors == []


def test_it_gives_the_page_back_and_ends_the_session_when_the_engine_refuses_mid_way(
    console_server, page_factory, clinic_a, clinician_a
):
    server = console_server(FAKE_ENGINE_MODE="refuse")
    page = page_factory(locale="ja-JP", cookies=[session_cookie_for(clinician_a, server)])
    page.goto(server.url + "/")
    page.get_by_role("button", name="録音開始").click()
    state = page.locator("#connection-state")
    expect(state).to_have_attribute("data-state", "live", timeout=20_000)
    session_id = page.evaluate("() => window.__voiceaiRecorder.session.id")
    # The fake engine refuses after 3 s of audio.
    expect(state).to_have_attribute("data-state", "failed", timeout=20_000)
    expect(page.locator("#alerts")).to_contain_text("文字起こしサービスがこの録音を拒否した")
    expect(page.get_by_role("button", name="録音開始")).to_be_enabled()
    expect(page.get_by_role("button", name="停止")).to_be_disabled()
    expect(page.locator("#language")).to_be_enabled()
    screenshot(page, "record-engine-refused")
    # The server fails and seals the session right after closing the socket.
    for _ in range(20):
        session = ConsultationSession.objects.get(pk=session_id)
        if session.audio_sha256:
            break
        page.wait_for_timeout(250)
    assert session.status == "failed" and session.failure_reason == "engine_refused"
    # What was stored before the refusal is sealed and playable.
    assert session.audio_sha256 and session.audio_bytes >= 96_000
    # No reconnect loop: the page stays failed and opens no new socket.
    reconnects = page.evaluate("() => window.__voiceaiRecorder.client.reconnects")
    page.wait_for_timeout(2000)
    assert page.evaluate("() => window.__voiceaiRecorder.client.reconnects") == reconnects == 0


def _leave_for_the_list(page, *, accept: bool) -> str:
    """Click the header's Consultations link mid-recording; answer the
    page's own question. Returns the question."""
    asked = []

    def answer(dialog):
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", answer)
    page.get_by_role("navigation").get_by_role("link", name="Consultations").click()
    if accept:
        page.wait_for_url("**/sessions/")
    else:
        page.wait_for_timeout(300)
    assert asked, "no question before leaving a live recording"
    return asked[0]


def test_it_never_strands_a_consultation_when_the_clinician_leaves_the_record_page(
    console_server, page_factory, clinic_a, clinician_a
):
    from datetime import timedelta

    from django.utils import timezone

    from clinics.models import AuditEvent
    from transcription import live_state

    server = console_server(ABANDONED_SESSION_CHECK_SECONDS="1")
    page = page_factory(cookies=[session_cookie_for(clinician_a, server)])
    page.goto(server.url + "/")
    page.get_by_label("External reference (optional)").fill("chart-15")
    page.get_by_role("button", name="Start recording").click()
    state = page.locator("#connection-state")
    expect(state).to_have_attribute("data-state", "live", timeout=20_000)
    page.wait_for_function("() => window.__voiceaiRecorder.client.durable > 96000", timeout=20_000)
    session_id = page.evaluate("() => window.__voiceaiRecorder.session.id")

    # The consultation's page opens in a new tab; the recording goes on here.
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Open this consultation's page").click()
    detail = opened.value
    expect(detail.locator("h1")).to_contain_text("chart-15")
    expect(detail.locator("#audio-so-far")).to_be_visible()
    assert "00:00" not in detail.locator("#audio-so-far").inner_text()
    detail.close()
    expect(state).to_have_attribute("data-state", "live")

    # A same-tab link asks first, in the page's own words; "no" keeps recording.
    question = _leave_for_the_list(page, accept=False)
    assert "recording is running" in question and "10 minutes" in question
    expect(state).to_have_attribute("data-state", "live")
    _leave_for_the_list(page, accept=True)

    # The consultation's page shows what is stored and offers resume / end.
    page.goto(f"{server.url}/sessions/{session_id}/")
    expect(page.locator("#open-consultation")).to_be_visible()
    so_far = page.locator("#audio-so-far").inner_text()
    assert "00:00" not in so_far, so_far
    stored_finals = page.locator("#transcript li.final").count()
    assert stored_finals >= 1
    expect(page.locator("#provisional-hint")).to_have_count(0)
    screenshot(page, "detail-open-consultation")
    assert_accessible(page, "the page of an interrupted consultation")

    # Resume: the stored audio and finals stay, new audio is added after them.
    page.get_by_role("link", name="Resume recording").click()
    expect(page.locator("#resume-note")).to_be_visible()
    page.get_by_role("button", name="Resume recording").click()
    expect(state).to_have_attribute("data-state", "live", timeout=20_000)
    expect(page.locator("#transcript li.final")).to_have_count(stored_finals, timeout=10_000)
    resumed_at = page.evaluate("() => window.__voiceaiRecorder.client.durable")
    assert resumed_at > 96000
    page.wait_for_function(f"() => window.__voiceaiRecorder.client.durable > {resumed_at + 32000}", timeout=20_000)
    screenshot(page, "record-resumed")
    _leave_for_the_list(page, accept=True)
    session = ConsultationSession.objects.get(pk=session_id)
    assert session.status == "live"

    # Nobody comes back. The server restarts meanwhile; the grace (here one
    # minute, the clinic's setting) runs out: a new process ends and seals it.
    port = server.port
    server.kill()
    clinic_a.producer_grace_minutes = 1
    clinic_a.save()
    server = console_server(port=port, ABANDONED_SESSION_CHECK_SECONDS="1")
    two_minutes_ago = timezone.now() - timedelta(minutes=2)
    ConsultationSession.objects.filter(pk=session_id).update(started_at=two_minutes_ago)
    AuditEvent.objects.filter(object_id=session_id, action__in=["stream.start", "stream.stop"]).update(
        created_at=two_minutes_ago
    )
    for _ in range(40):
        session.refresh_from_db()
        if session.status == "ended" and session.audio_sha256:
            break
        page.wait_for_timeout(500)
    assert session.status == "ended", server.output()
    assert session.audio_sha256 and session.audio_bytes > resumed_at
    assert live_state.streams_in_use_now(clinic_id=clinic_a.pk) == 0
    page.goto(f"{server.url}/sessions/{session_id}/")
    expect(page.locator("#open-consultation")).to_have_count(0)
    expect(page.locator("audio")).to_be_visible()


def test_it_lets_the_clinician_end_an_interrupted_consultation_from_its_page(console_server, page_factory, clinician_a):
    server = console_server()
    page = page_factory(cookies=[session_cookie_for(clinician_a, server)])
    page.goto(server.url + "/")
    page.get_by_role("button", name="Start recording").click()
    state = page.locator("#connection-state")
    expect(state).to_have_attribute("data-state", "live", timeout=20_000)
    page.wait_for_function("() => window.__voiceaiRecorder.client.durable > 64000", timeout=20_000)
    session_id = page.evaluate("() => window.__voiceaiRecorder.session.id")
    _leave_for_the_list(page, accept=True)
    page.goto(f"{server.url}/sessions/{session_id}/")
    page.get_by_role("button", name="End consultation").click()
    expect(page.locator("#open-consultation")).to_have_count(0, timeout=10_000)
    expect(page.locator("audio")).to_be_visible()
    session = ConsultationSession.objects.get(pk=session_id)
    assert session.status == "ended" and session.audio_bytes >= 64000
    assert page.console_errors == []


PHONE = {"width": 390, "height": 844}
TABLET = {"width": 820, "height": 1180}


def _fits_the_width(page) -> None:
    # Against the device's width: a phone browser widens its layout viewport
    # to content that overflows, so innerWidth would hide it.
    overflow = page.evaluate("() => document.documentElement.scrollWidth") - page.viewport_size["width"]
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the screen"


def _one_line(locator) -> None:
    """The element's text sits on one line (no 英/語 wrapping per character)."""
    for handle in locator.element_handles():
        lines = handle.evaluate(
            """el => { const r = document.createRange(); r.selectNodeContents(el);
              return new Set([...r.getClientRects()].filter(b => b.width > 0).map(b => Math.round(b.top))).size; }"""
        )
        assert lines <= 1, f"{handle.inner_text()!r} wraps over {lines} lines"


def _in_view(page, locator) -> bool:
    box = locator.bounding_box()
    height = page.viewport_size["height"]
    return box is not None and box["y"] >= 0 and box["y"] + min(box["height"], 40) <= height


@pytest.mark.parametrize(("device", "viewport"), [("phone", PHONE), ("tablet", TABLET)])
@pytest.mark.parametrize("locale", ["en-US", "ja-JP"])
def test_it_works_one_handed_on_a_phone_and_a_tablet(
    console_server, page_factory, clinic_a, admin_a, device, viewport, locale
):
    server = console_server()
    # A few consultations for the list, one ended with a transcript.
    for i in range(3):
        ConsultationSession.objects.create(
            clinic=clinic_a, language="ja-JP" if i % 2 else "en-US", engine="fake", status="ended",
            external_ref=f"chart-{i}", audio_duration_ms=65_000,
        )  # fmt: skip
    page = page_factory(locale=locale, cookies=[session_cookie_for(admin_a, server)], viewport=viewport)
    tag = f"{device}-{locale}"

    # Record: while recording, Stop and the transcript are on screen together.
    page.goto(server.url + "/")
    _fits_the_width(page)
    page.locator("#start").click()
    state = page.locator("#connection-state")
    expect(state).to_have_attribute("data-state", "live", timeout=20_000)
    first_line = page.locator("#transcript li").first
    expect(first_line).to_be_visible(timeout=20_000)
    assert _in_view(page, page.locator("#stop")), "Stop is off screen while recording"
    assert _in_view(page, first_line), "the transcript is off screen while recording"
    _fits_the_width(page)
    screenshot(page, f"{tag}-record-live")
    # The reconnect notice leaves the status dot round.
    page.evaluate(
        "() => { const s = document.querySelector('#connection-state');"
        " s.dataset.state = 'reconnecting';"
        " s.textContent = JSON.parse(document.getElementById('console-i18n').textContent).state_reconnecting; }"
    )
    dot = page.evaluate(
        "() => { const d = getComputedStyle(document.querySelector('#connection-state'), '::before');"
        " return [d.width, d.height]; }"
    )
    assert dot[0] == dot[1], dot
    screenshot(page, f"{tag}-record-reconnecting-notice")
    page.locator("#stop").click()
    expect(page.locator("#start")).to_be_enabled(timeout=30_000)

    # The list: no sideways scrolling, no word broken per character.
    page.goto(server.url + "/sessions/")
    _fits_the_width(page)
    _one_line(page.locator(".badge"))
    _one_line(page.locator("form.panel button, form.panel .button"))
    screenshot(page, f"{tag}-list")
    assert_accessible(page, f"the list on a {device}")

    # The detail: the transcript comes before the red Delete.
    page.locator("tbody a").first.click()
    _fits_the_width(page)
    transcript = page.locator("#transcript-heading").bounding_box()
    delete = page.locator("#delete-heading").bounding_box()
    assert delete["y"] > transcript["y"], "Delete sits above the transcript"
    screenshot(page, f"{tag}-detail")
