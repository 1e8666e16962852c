"""The console in a real Chromium with a fake microphone, against real
server processes (fake engine): sign in, record, live transcript, a second
screen following along, a server killed mid-recording and the page resuming
with every byte stored, the Japanese interface, and tenant isolation."""

from __future__ import annotations

import array
import base64
import hashlib
import math
import wave

import pytest
from playwright.sync_api import expect

from sessions.audio import wav_header
from sessions.models import ConsultationSession, TranscriptSegment
from tests.browser.conftest import FAKE_MIC_WAV, assert_accessible, screenshot, session_cookie_for, set_browser_password
from tests.servers import requires_shared_database

pytestmark = [pytest.mark.browser, requires_shared_database()]

SENT_BYTES_JS = """() => {
  const bytes = window.__voiceaiRecorder.client.copiedBytes();
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}"""


def _produced(page) -> int:
    return page.evaluate("() => window.__voiceaiRecorder ? window.__voiceaiRecorder.client.produced : 0")


def test_it_records_a_consultation_resumes_after_a_server_drop_and_stores_every_byte(
    console_server, page_factory, clinician_a
):
    server = console_server()
    set_browser_password(clinician_a, "correct horse 42")
    page = page_factory(init_script="window.__voiceaiKeepCopy = true;")

    # Sign in through the form.
    page.goto(server.url + "/")
    expect(page).to_have_url(f"{server.url}/accounts/login/?next=/")
    page.get_by_label("User name").fill(clinician_a.username)
    page.get_by_label("Password").fill("correct horse 42")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#record-form")).to_be_visible()

    # Record: live state, level meter moving, transcript lines appearing.
    # Keyboard only: type the reference, Enter starts the recording.
    page.get_by_label("External reference (optional)").fill("chart-7")
    page.get_by_label("External reference (optional)").press("Enter")
    state = page.locator("#connection-state")
    expect(state).to_have_attribute("data-state", "live", timeout=20_000)
    expect(page.locator("#transcript li.final").first).to_be_visible(timeout=20_000)
    session_id = page.evaluate("() => window.__voiceaiRecorder.session.id")
    assert int(page.get_attribute("#mic-level", "aria-valuenow")) >= 0
    assert_accessible(page, "the record page while recording")
    screenshot(page, "record-live")

    # A second screen follows the consultation.
    viewer = page.context.new_page()
    viewer.goto(server.url + page.get_attribute("#viewer-link", "href"))
    expect(viewer.locator("#connection-state")).to_have_attribute("data-state", "watching", timeout=15_000)
    expect(viewer.locator("#transcript li.final").first).to_be_visible(timeout=15_000)
    assert_accessible(viewer, "the live view while following")
    screenshot(viewer, "viewer-live")

    # The server dies mid-recording; the page keeps the audio and says so.
    port, before_drop = server.port, _produced(page)
    server.kill()
    expect(state).to_have_attribute("data-state", "reconnecting", timeout=15_000)
    screenshot(page, "record-reconnecting")
    server = console_server(port=port)
    expect(state).to_have_attribute("data-state", "live", timeout=40_000)
    assert page.evaluate("() => window.__voiceaiRecorder.client.reconnects") >= 1
    # Keep recording a little on the new process, then stop.
    page.wait_for_function(f"() => window.__voiceaiRecorder.client.durable > {before_drop + 32_000}", timeout=20_000)
    page.get_by_role("button", name="Stop").click()
    expect(state).to_have_attribute("data-state", "closed", timeout=30_000)
    screenshot(page, "record-saved")

    sent = base64.b64decode(page.evaluate(SENT_BYTES_JS))
    assert len(sent) == _produced(page) > before_drop + 32_000
    # Only the refused connections while the server was down.
    assert [e for e in page.console_errors if "ERR_CONNECTION_REFUSED" not in e] == []

    session = ConsultationSession.objects.get(pk=session_id)
    assert session.status == "ended"
    assert session.external_ref == "chart-7"
    assert session.audio_bytes == len(sent)
    wav_path = server_media(server) / session.storage_key
    with wave.open(str(wav_path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        stored = wav.readframes(wav.getnframes())
    assert stored == sent  # no gap, no duplicate across the drop
    assert hashlib.sha256(wav_header(len(sent), 16000) + sent).hexdigest() == session.audio_sha256
    # What the page captured is the fixture's speech, resampled 16 kHz ->
    # the AudioContext's rate -> 16 kHz in the worklet: loudness envelopes
    # line up (the file starts when the microphone opens, so find the lag).
    with wave.open(str(FAKE_MIC_WAV), "rb") as source:
        original = source.readframes(source.getnframes())
    correlation = envelope_correlation(stored, original)
    print(f"envelope correlation of the captured audio with the fixture: {correlation:.3f}")
    assert correlation > 0.9, correlation

    # Finals on the page are exactly the stored finals, once each.
    page_ids = page.eval_on_selector_all("#transcript li.final", "els => els.map(e => e.dataset.segmentId)")
    stored_ids = list(
        TranscriptSegment.objects.filter(session=session, is_final=True).values_list("segment_id", flat=True)
    )
    assert len(page_ids) == len(set(page_ids))
    assert sorted(page_ids) == sorted(stored_ids)
    assert len(page_ids) >= 2

    # The viewer saw the end; the consultation page shows the transcript.
    expect(viewer.locator("#connection-state")).to_have_attribute("data-state", "ended", timeout=15_000)
    # It opens in a new tab (a recording would go on in this one).
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Open this consultation's page").click()
    page = opened.value
    page.console_errors = []
    expect(page.locator("#transcript li.final")).to_have_count(len(stored_ids))
    expect(page.locator("audio")).to_have_attribute("src", f"/api/v1/sessions/{session_id}/audio/")
    # The player streams the stored WAV with the signed-in session.
    duration = page.evaluate(
        """() => new Promise((resolve, reject) => {
          const audio = document.querySelector('audio');
          audio.addEventListener('loadedmetadata', () => resolve(audio.duration));
          audio.addEventListener('error', () => reject(new Error('audio error ' + audio.error.code)));
          audio.preload = 'metadata';
          audio.load();
        })"""
    )
    assert abs(duration - len(sent) / 32_000) < 0.1
    txt = page.evaluate(f"() => fetch('/api/v1/sessions/{session_id}/transcript/?format=txt').then(r => r.text())")
    first_final = page.locator("#transcript li.final .text").first.inner_text()
    assert first_final and first_final in txt
    screenshot(page, "session-detail")


def _envelope(pcm: bytes, window: int = 800) -> list[float]:
    """RMS of each 50 ms window of 16 kHz PCM16."""
    samples = array.array("h", pcm[: len(pcm) - len(pcm) % 2])
    return [
        math.sqrt(sum(v * v for v in samples[i : i + window]) / window)
        for i in range(0, len(samples) - window + 1, window)
    ]


def envelope_correlation(recorded: bytes, original: bytes, max_lag: int = 40) -> float:
    """Best Pearson correlation of the two envelopes over lags of up to
    ``max_lag`` windows (2 s), on the overlapping part."""
    a, b = _envelope(recorded), _envelope(original)
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        pairs = [(a[i], b[i + lag]) for i in range(len(a)) if 0 <= i + lag < len(b)]
        if len(pairs) < 40:
            continue
        xs, ys = zip(*pairs, strict=True)
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        cov = sum((x - mx) * (y - my) for x, y in pairs)
        sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
        sy = math.sqrt(sum((y - my) ** 2 for y in ys))
        if sx and sy:
            best = max(best, cov / (sx * sy))
    return best


def server_media(server):
    from pathlib import Path

    return Path(server.env["MEDIA_ROOT"])


def test_it_speaks_japanese_and_switches_to_english(console_server, page_factory, admin_a, clinic_a, hold_stream_slot):
    server = console_server()
    # "Sessions at the same time" counts the stream slots held, as the quota does.
    live = ConsultationSession.objects.create(clinic=clinic_a, language="ja-JP", engine="fake", status="live")
    hold_stream_slot(clinic_a, live.pk)
    page = page_factory(locale="ja-JP", cookies=[session_cookie_for(admin_a, server)])
    page.goto(server.url + "/")
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.get_by_role("button", name="録音開始")).to_be_visible()
    # Set by the JavaScript from the embedded Japanese strings.
    expect(page.locator("#connection-state")).to_have_text("録音していません")
    screenshot(page, "record-ja")
    page.clock.install()
    page.goto(server.url + "/dashboard/")
    expect(page.get_by_role("heading", name="クリニックのダッシュボード")).to_be_visible()
    expect(page.locator(".usage-bar")).to_have_count(3)
    # The dashboard refreshes itself: a consultation that goes live shows up.
    new_live = ConsultationSession.objects.create(
        clinic=clinic_a, language="ja-JP", engine="fake", status="live", external_ref="new-live"
    )
    hold_stream_slot(clinic_a, new_live.pk)
    expect(page.get_by_text("new-live")).to_have_count(0)
    page.clock.run_for(16_000)
    expect(page.get_by_text("new-live")).to_be_visible()
    expect(page.locator(".usage-label").first).to_contain_text("2 / 20")
    screenshot(page, "dashboard-ja")
    # The user's choice wins over the browser's language.
    page.get_by_label("表示言語").select_option("en")
    page.get_by_role("button", name="変更").click()
    expect(page.get_by_role("heading", name="Clinic dashboard")).to_be_visible()
    assert page.console_errors == []


def test_it_answers_404_to_clinic_b_for_clinic_a_sessions(console_server, page_factory, clinic_a, user_b):
    server = console_server()
    session = ConsultationSession.objects.create(clinic=clinic_a, language="en-US", engine="fake", external_ref="a-1")
    page = page_factory(cookies=[session_cookie_for(user_b, server)])
    for path in (f"/sessions/{session.pk}/", f"/sessions/{session.pk}/live/"):
        response = page.goto(server.url + path)
        assert response.status == 404
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    page.goto(server.url + "/sessions/")
    expect(page.get_by_text("a-1")).to_have_count(0)
    screenshot(page, "clinic-b-denied")
