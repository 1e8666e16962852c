"""Django admin in Chromium at 1280 px: the session list shows every column
without sideways scrolling, the session page plays the audio, and no page
logs a console error (the favicon included)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from sessions import storage_keys
from sessions.audio import wav_header
from sessions.models import ConsultationSession
from tests.browser.conftest import screenshot, session_cookie_for
from tests.servers import requires_shared_database

pytestmark = [pytest.mark.browser, requires_shared_database()]


def _sessions(clinic, media_root) -> ConsultationSession:
    for i in range(3):
        ConsultationSession.objects.create(
            clinic=clinic, language="en-US", engine="fake", status="ended", external_ref=f"chart-{i:04d}-followup",
            audio_duration_ms=125_000,
        )  # fmt: skip
    sealed = ConsultationSession.objects.create(clinic=clinic, language="en-US", engine="fake", status="ended")
    key = storage_keys.audio_wav_key(sealed)
    path = media_root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_header(32_000, 16000) + b"\1\0" * 16_000)
    ConsultationSession.objects.filter(pk=sealed.pk).update(storage_key=key, audio_bytes=32_000, audio_duration_ms=1000)
    return sealed


@pytest.mark.parametrize("who", ["clinic admin", "platform staff"])
def test_it_fits_the_session_list_at_1280_px_and_plays_the_audio(
    console_server, server_factory, collected_static_root, page_factory, clinic_a, admin_a, who
):
    server = console_server(STATIC_ROOT=str(collected_static_root))
    sealed = _sessions(clinic_a, server_factory.media_root)
    if who == "clinic admin":
        admin_a.is_staff = True
        admin_a.save(update_fields=["is_staff"])
        user = admin_a
    else:
        user = get_user_model().objects.create_superuser(username="platform-1280", password="unused-pw-1280")
    page = page_factory(cookies=[session_cookie_for(user, server)])
    page.goto(server.url + "/admin/consultations/consultationsession/")
    expect(page.locator("#result_list")).to_be_visible()
    # The admin's .results box scrolls sideways when the table is wider: cut off.
    overflow = page.evaluate(
        "() => { const box = document.querySelector('#changelist .results');"
        " return box.scrollWidth - box.clientWidth; }"
    )
    assert overflow <= 0, f"the session list is {overflow}px too wide at 1280 px"
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    screenshot(page, f"admin-sessions-1280-{who.replace(' ', '-')}")

    page.goto(f"{server.url}/admin/consultations/consultationsession/{sealed.pk}/change/")
    duration = page.evaluate(
        """() => new Promise((resolve, reject) => {
          const audio = document.querySelector('audio');
          audio.addEventListener('loadedmetadata', () => resolve(audio.duration));
          audio.addEventListener('error', () => reject(new Error('audio error ' + audio.error.code)));
          audio.preload = 'metadata';
          audio.load();
        })"""
    )
    assert abs(duration - 1.0) < 0.05
    assert page.console_errors == []
