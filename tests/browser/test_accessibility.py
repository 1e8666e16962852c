"""axe-core (vendored from npm, tests/browser/vendor/axe-core) on every
console page, in English and Japanese: a serious or critical violation
fails the test."""

from __future__ import annotations

import hashlib

import pytest

from clinics.models import Membership, Role
from notes.models import ClinicalNote
from sessions.models import ConsultationSession, TranscriptSegment
from tests.browser.conftest import AXE_JS, AXE_SHA256, assert_accessible, screenshot, session_cookie_for
from tests.servers import requires_shared_database

pytestmark = [pytest.mark.browser, requires_shared_database()]


def test_it_uses_the_vendored_axe_core_from_npm():
    assert hashlib.sha256(AXE_JS.read_bytes()).hexdigest() == AXE_SHA256
    assert AXE_JS.read_text()[:40].startswith("/*! axe v4.14.1")


def _ended_session(clinic) -> ConsultationSession:
    session = ConsultationSession.objects.create(
        clinic=clinic, language="en-US", engine="fake", status="ended", external_ref="chart-a11y",
        audio_duration_ms=4000, audio_bytes=128_000,
    )  # fmt: skip
    for i, text in enumerate(["the patient reports a mild headache", "no fever since yesterday"]):
        TranscriptSegment.objects.create(
            clinic=clinic, session=session, segment_id=f"s{i}", start_ms=i * 2000, end_ms=i * 2000 + 1900, text=text
        )
    return session


@pytest.mark.parametrize("locale", ["en-US", "ja-JP"])
def test_it_finds_no_serious_accessibility_violation_on_any_console_page(
    console_server, page_factory, clinic_a, clinic_b, admin_a, clinician_a, locale
):
    server = console_server()
    ended = _ended_session(clinic_a)
    live = ConsultationSession.objects.create(clinic=clinic_a, language="en-US", engine="fake", status="live")
    # The note panel's states that the note's own browser test does not reach.
    failed_note = _ended_session(clinic_a)
    ClinicalNote.objects.create(
        clinic=clinic_a, session=failed_note, version=1, language="en-US", engine="extractive",
        status="failed", error_code="note_engine_timeout", error_retryable=True,
    )  # fmt: skip
    generating_note = _ended_session(clinic_a)
    ClinicalNote.objects.create(
        clinic=clinic_a, session=generating_note, version=1, language="en-US", engine="extractive",
        status="generating", progress=40, attempts=2,
    )  # fmt: skip

    anonymous = page_factory(locale=locale)
    anonymous.goto(server.url + "/accounts/login/")
    assert_accessible(anonymous, "the sign-in page")

    admin = page_factory(locale=locale, cookies=[session_cookie_for(admin_a, server)])
    pages = {
        "record": "/",
        "consultations": "/sessions/",
        "filtered consultations": "/sessions/?status=nonsense",
        "an ended consultation": f"/sessions/{ended.pk}/",
        "a live consultation": f"/sessions/{live.pk}/",
        "a consultation whose note failed": f"/sessions/{failed_note.pk}/",
        "a consultation whose note is being written": f"/sessions/{generating_note.pk}/",
        "the live view of an ended consultation": f"/sessions/{ended.pk}/live/",
        "the live view": f"/sessions/{live.pk}/live/",
        "the delete confirmation": f"/sessions/{ended.pk}/delete/",
        "the dashboard": "/dashboard/",
        "a missing page": "/sessions/00000000-0000-0000-0000-000000000000/",
    }
    for where, path in pages.items():
        admin.goto(server.url + path)
        admin.wait_for_load_state("networkidle")
        assert_accessible(admin, where)
        screenshot(admin, f"a11y-{locale}-{where.replace(' ', '-')}")

    clinician = page_factory(locale=locale, cookies=[session_cookie_for(clinician_a, server)])
    clinician.goto(server.url + "/dashboard/")  # clinic admins only: the 403 page
    assert_accessible(clinician, "the 403 page")
    Membership.objects.create(clinic=clinic_b, user=clinician_a, role=Role.CLINICIAN)
    clinician.goto(server.url + "/clinic/")
    assert_accessible(clinician, "the clinic picker")
