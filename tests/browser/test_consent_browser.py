"""The clinician's natural flow in a clinic that requires consent, in a
real Chromium: the record page will not start without the patient's
consent, starts with it (recorded on the session, audited), and the
patient's withdrawal on the consultation's page erases it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from clinics.models import AuditEvent
from sessions.models import ConsultationSession
from tests.browser.conftest import assert_accessible, screenshot, session_cookie_for
from tests.servers import requires_shared_database

pytestmark = [pytest.mark.browser, requires_shared_database()]


def test_it_asks_for_consent_before_recording_and_erases_on_withdrawal(
    console_server, page_factory, clinic_a, clinician_a
):
    clinic_a.consent_required = True
    clinic_a.save(update_fields=["consent_required"])
    server = console_server()
    page = page_factory(cookies=[session_cookie_for(clinician_a, server)])
    page.goto(server.url + "/")

    # Without a consent choice the form does not start.
    page.get_by_role("button", name="Start recording").click()
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "idle")
    assert page.evaluate("() => !document.getElementById('record-form').checkValidity()")
    assert not ConsultationSession.objects.exists()

    page.get_by_label("The patient agreed verbally").check()
    page.get_by_label("Consent note (optional)").fill("asked at reception")
    assert_accessible(page, "the record page asking for consent")
    page.get_by_role("button", name="Start recording").click()
    state = page.locator("#connection-state")
    expect(state).to_have_attribute("data-state", "live", timeout=20_000)
    expect(page.locator("#transcript li.final").first).to_be_visible(timeout=20_000)
    page.get_by_role("button", name="Stop").click()
    expect(state).to_have_attribute("data-state", "closed", timeout=30_000)
    session = ConsultationSession.objects.get()
    assert session.consent_method == "verbal" and session.consent_note == "asked at reception"
    assert session.audio_bytes > 0
    screenshot(page, "consent-recorded")

    # The patient withdraws consent: confirmed on its own page, then erased.
    page.goto(f"{server.url}/sessions/{session.pk}/")
    expect(page.locator("#consent-method")).to_have_text("The patient agreed verbally")
    page.get_by_role("link", name="The patient withdraws consent…").click()
    page.get_by_role("button", name="Withdraw consent and delete").click()
    expect(page).to_have_url(f"{server.url}/sessions/")
    assert not ConsultationSession.objects.filter(pk=session.pk).exists()
    tombstone = AuditEvent.objects.get(action="session.erase", object_id=str(session.pk))
    assert tombstone.details["reason"] == "consent_withdrawn"
