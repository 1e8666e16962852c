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
    session = ConsultationSession.objects.get(pk=session_id)
    assert session.status == "failed" and session.failure_reason == "engine_refused"
    # No reconnect loop: the page stays failed and opens no new socket.
    reconnects = page.evaluate("() => window.__voiceaiRecorder.client.reconnects")
    page.wait_for_timeout(2000)
    assert page.evaluate("() => window.__voiceaiRecorder.client.reconnects") == reconnects == 0
